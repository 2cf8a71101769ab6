"""`procctl cluster up`: a Dask scheduler and workers on this machine, for
trying the executor (and for the tests), every socket on 127.0.0.1.

It runs Dask's own commands (`dask scheduler`, `dask worker`) with this
Python, so the workers import the procctl installed here. Each runs in a
session of its own and is told to get SIGTERM if this process dies; a stop
sends SIGTERM to each, then SIGKILL to each session after a grace period.

The workers declare their memory as a Dask resource, so a job's `memory`
limit is admitted against it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procctl.cluster.linux import die_with_parent
from procctl.errors import ClusterError

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


@dataclasses.dataclass
class LocalCluster:
    address: str
    """`tcp://127.0.0.1:PORT`."""
    workers: int
    threads: int
    """Per worker."""
    memory_bytes: int
    """Per worker: its memory limit and its `memory` resource."""
    processes: list[subprocess.Popen[bytes]]
    """The scheduler, then the workers' nanny."""
    directory: Path

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.processes]


def _total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip


def start(*, workers: int, threads: int, port: int, memory_bytes: int | None, dashboard: int | None) -> LocalCluster:
    """Start the scheduler and the workers and wait until every worker has
    joined. Raises ClusterError (having stopped what it started)."""
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"procctl cluster needs Dask's distributed scheduler, which is not installed ({exc.name}): pip install 'procctl[dask]'") from None
    directory = Path(tempfile.mkdtemp(prefix="procctl-cluster-"))
    memory = memory_bytes or _total_memory() // workers
    env = dict(os.environ)
    scheduler_file = directory / "scheduler.json"
    dashboard_args = ["--dashboard", "--dashboard-address", f"{HOST}:{dashboard}"] if dashboard is not None else ["--no-dashboard", "--dashboard-address", f"{HOST}:0"]
    cluster = LocalCluster("", workers, threads, memory, [], directory)
    try:
        cluster.processes.append(
            _spawn(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", HOST, "--port", str(port),
                 "--scheduler-file", str(scheduler_file), *dashboard_args],
                env, directory / "scheduler.log",
            )  # fmt: skip
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists():
            _check_alive(cluster)
            if time.monotonic() > deadline:
                raise ClusterError(f"the scheduler did not start within {START_TIMEOUT_S:g}s (see {directory / 'scheduler.log'})")
            time.sleep(0.05)
        cluster.address = json.loads(scheduler_file.read_text())["address"]
        cluster.processes.append(
            _spawn(
                [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address, "--host", HOST,
                 "--nworkers", str(workers), "--nthreads", str(threads), "--memory-limit", str(memory),
                 "--resources", f"memory={memory}", "--local-directory", str(directory),
                 "--no-dashboard", "--dashboard-address", f"{HOST}:0"],
                env, directory / "workers.log",
            )  # fmt: skip
        )
        with distributed.Client(cluster.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            try:
                client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
            except (TimeoutError, distributed.TimeoutError):
                raise ClusterError(f"the workers did not join within {START_TIMEOUT_S:g}s (see {directory / 'workers.log'})") from None
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _check_alive(cluster: LocalCluster) -> None:
    for proc in cluster.processes:
        code = proc.poll()
        if code is not None:
            raise ClusterError(f"{Path(proc.args[2]).name if isinstance(proc.args, list) else proc.args} exited with code {code} (see the logs in {cluster.directory})")


def wait(cluster: LocalCluster) -> str:
    """Until SIGINT or SIGTERM, or until a process of the cluster ends;
    returns which."""
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        while True:
            for proc in cluster.processes:
                code = proc.poll()
                if code is not None:
                    return f"a process of the cluster (pid {proc.pid}) exited with code {code} (see the logs in {cluster.directory})"
            received = signal.sigtimedwait(watched, 0.5)
            if received is not None:
                return f"stopping ({signal.Signals(received.si_signo).name})"
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop(cluster: LocalCluster) -> None:
    """SIGTERM to the workers, then the scheduler; SIGKILL to whatever of
    their sessions is left after the grace period."""
    for proc in reversed(cluster.processes):
        if proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in reversed(cluster.processes):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            pass
    for proc in cluster.processes:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session's group: the workers a nanny started
        except OSError:
            pass
        if proc.poll() is None:
            proc.wait()


def remove(cluster: LocalCluster) -> None:
    """Its directory (logs, the workers' scratch space), once it is stopped."""
    shutil.rmtree(cluster.directory, ignore_errors=True)

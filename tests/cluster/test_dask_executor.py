"""`each` jobs on a real Dask cluster of this machine: a scheduler and two
workers started by `procctl cluster up` (every socket on 127.0.0.1,
dashboards off), driven by the real `procctl run --executor dask://…`.

Marked `cluster`: `.ci/run` runs them as their own step, after installing
the `dask` extra. Every process of the cluster is ended by pid and process
group in the fixture's `finally`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Project, wait_until

from procctl import __version__
from procctl.cluster.linux import die_with_parent

pytestmark = pytest.mark.cluster

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PY = sys.executable
WORKERS, THREADS, MEMORY = 2, 2, 1 << 30
"""The cluster: 2 workers of 2 threads, each with 1 GiB (its memory limit
and its `memory` resource)."""


class Cluster:
    def __init__(self, info: dict[str, Any], proc: subprocess.Popen[bytes]) -> None:
        self.address: str = info["address"]
        self.pids: list[int] = info["pids"]
        self.proc = proc
        self.url = "dask://" + self.address.split("://", 1)[1]

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def processes(self) -> list[psutil.Process]:
        """`procctl cluster up` and everything under it."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def workers_up(self) -> None:
        """Wait until both workers are there (after one was killed, its nanny starts it again)."""
        with self.client() as client:
            client.wait_for_workers(WORKERS, timeout=120)


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    return line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        import distributed  # noqa: F401
    except ImportError:
        # A run of `-m cluster` without the extra tests nothing: say so, do not skip.
        pytest.fail("the cluster tests need procctl[dask]: python3 -m pip install -q -e '.[test,dask]'")
    err = tmp_path_factory.mktemp("cluster") / "cluster-up.err"
    with open(err, "wb") as errors:
        proc = subprocess.Popen(
            [PY, "-m", "procctl", "cluster", "up", "--port", "0", "--json", "--workers", str(WORKERS), "--threads", str(THREADS), "--memory", str(MEMORY)],
            stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True,
            # Should this test process die without its `finally`, the cluster stops too.
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip
    groups = {proc.pid}
    try:
        line = _first_line(proc, 180)
        assert line, f"procctl cluster up did not start: {err.read_text()}"
        info = json.loads(line)
        # The line is what docs/schemas/cluster.schema.json says.
        import jsonschema

        jsonschema.validate(info, json.loads((HELPERS.parents[1] / "docs" / "schemas" / "cluster.schema.json").read_text()))
        up = Cluster(info, proc)
        groups.update(up.pids)
        yield up
    finally:
        groups.update(member.pid for member in Cluster({"address": "x://y", "pids": []}, proc).processes())
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _manifest(project: Project, text: str) -> None:
    project.write(textwrap.dedent(text))


def _events(path: Path) -> list[dict[str, Any]]:
    # One record a line, "\n"-ended (str.splitlines would also cut at the
    # other line breaks Unicode knows, which a record may hold unescaped).
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def _living(pids: list[int]) -> list[int]:
    """Those of `pids` still alive (zombies do not count: they run nothing)."""
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.Error:
            pass
    return found


def _supervise(project: Project, *args: str) -> subprocess.Popen[bytes]:
    """`procctl run ARGS` in the background, once its control socket answers
    (not once nothing is `starting`: a job queued on the cluster stays so)."""
    proc = project.start("run", *args)
    wait_until(lambda: project.status() is not None or proc.poll() is not None, timeout=60, what="the supervisor to answer")
    assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
    return proc


def _peak_rss(project: Project) -> int:
    """The peak RSS the supervisor has heard of for its first instance (0 before any sample)."""
    status = project.status()
    return (status["instances"][0]["peak_rss_bytes"] or 0) if status else 0  # type: ignore[index]


def _procctl_tasks(cluster: Cluster) -> int:
    """procctl's tasks the scheduler knows of: the jobs in flight on the cluster."""

    def count(dask_scheduler: Any = None) -> int:
        return sum(1 for key in dask_scheduler.tasks if isinstance(key, str) and key.startswith("procctl-"))

    with cluster.client() as client:
        return int(client.run_on_scheduler(count))


def test_every_socket_of_the_cluster_is_on_loopback(cluster: Cluster) -> None:
    listening = [conn for conn in psutil.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
    ours = {proc.pid for proc in cluster.processes()}
    mine = [conn for conn in listening if conn.pid in ours]
    # The scheduler (its port and its HTTP endpoint), each nanny and each worker.
    assert len(mine) >= 2 + 2 * WORKERS, mine
    assert {conn.laddr.ip for conn in mine} == {"127.0.0.1"}, mine


def test_output_is_byte_exact_through_the_cluster(project: Project, cluster: Cluster) -> None:
    """1. One job writes 20 MB of random bytes (invalid UTF-8, odd chunks,
       more than the 8 MiB in flight a job may have) and exits 3; another a
       line of 200 kB with no newline, invalid UTF-8 and a line on stderr.
    2. Run here, then on the cluster: each log file holds exactly the bytes
       written; the event stream and the screen carry the same lines; the
       exit code is in the summary and the history."""
    expected = project.root / "expected.bin"
    _manifest(
        project,
        f"""
        [settings]
        fail_fast = false

        [process.out]
        cmd = "{PY} {HELPERS}/$PROCCTL_ITEM"   # the item, split into the helper and its arguments
        each = ["random_bytes.py {expected} 20000000 7", "bad_output.py 200000"]
        """,
    )
    seen: dict[str, dict[str, Any]] = {}
    for where in ("local", cluster.url):
        result = project.run("run", "--plain", "--executor", where, "--events", f"ev-{len(seen)}.jsonl", "--json", timeout=240)
        assert result.returncode == 1, result.stderr
        summary = json.loads(result.stdout)  # with --json, the lines people read are on stderr
        assert {row["name"]: (row["state"], row["exit_code"]) for row in summary["instances"]} == {"out[1]": ("failed", 3), "out[2]": ("exited", 0)}
        assert (project.logs / "out.1.log").read_bytes() == expected.read_bytes()
        bad = (project.logs / "out.2.log").read_bytes()
        assert b"done\n" in bad and bad.replace(b"done\n", b"", 1) == b"bad \xff\xfe bytes\n\xc3(\n" + b"x" * 200_000
        lines: dict[str, list[str]] = {}
        for event in _events(project.root / f"ev-{len(seen)}.jsonl"):
            if event["event"] == "output":
                lines.setdefault(f"{event['instance']} {event['stream']}", []).append(event["line"] + "\n")
        streams = {key: "".join(parts) for key, parts in lines.items()}
        screen = [line.split(" | ", 1)[1] for line in result.stderr.splitlines() if " out[1] " in line[:20] and " | " in line]
        seen[where] = {"streams": streams, "screen": screen}
    local, remote = seen["local"], seen[cluster.url]
    # Records are lines as the text reads (a "\r" ends one too): compare the
    # two runs, and the text without its line ends with what was written.
    assert remote["streams"]["out[1] stdout"] == local["streams"]["out[1] stdout"]
    written = expected.read_bytes().decode("utf-8", "replace")
    assert "".join(remote["streams"]["out[1] stdout"].split()) == "".join(written.split())
    assert remote["streams"]["out[2] stderr"] == local["streams"]["out[2] stderr"] == "done\n"
    # A line longer than 64 KiB is shown in pieces, where the pieces end depends on the reads.
    assert remote["streams"]["out[2] stdout"].replace("\n", "") == local["streams"]["out[2] stdout"].replace("\n", "")
    assert remote["screen"] == local["screen"] and len(remote["screen"]) > 10_000
    history = json.loads(project.run("history", "out", "--json", "-n", "10").stdout)["runs"]
    rows = [row for row in history if row["instance"] == "out[1]"]
    assert [row["exit_code"] for row in rows] == [3, 3] and all(row["cpu_time_s"] and row["duration_s"] for row in rows)


def test_j2_caps_the_jobs_in_flight_and_the_pool_resizes_while_it_runs(project: Project, cluster: Cluster) -> None:
    """1. Six jobs that hold until released, -j 2, on a cluster of 4 threads:
       2 run; the scheduler knows of 2 procctl tasks, no more; the rest wait
       in procctl's pool (pending).
    2. `procctl pool 3`: a third is sent and runs.
    3. Released, all six end well."""
    log, go = project.root / "hold.log", project.root / "go"
    _manifest(
        project,
        f"""
        [process.hold]
        cmd = "{PY} {HELPERS}/hold.py {log} {go}-$PROCCTL_ITEM"
        each = {{ range = [1, 6] }}
        """,
    )
    proc = _supervise(project, "--plain", "-j", "2", "--executor", cluster.url)
    try:
        wait_until(lambda: log.exists() and log.read_text().count("start") == 2, timeout=60, what="two jobs to start")
        assert _procctl_tasks(cluster) == 2
        states = {row["name"]: row["state"] for row in project.status()["instances"]}  # type: ignore[index]
        assert sorted(states.values()) == ["pending"] * 4 + ["running"] * 2
        assert project.run("pool", "3").stdout.startswith("pool: 3 at once")
        import jsonschema

        pool = json.loads(project.run("pool", "--json").stdout)
        jsonschema.validate(pool, json.loads((HELPERS.parents[1] / "docs" / "schemas" / "pool.schema.json").read_text()))
        assert (pool["size"], pool["running"]) == (3, 3)
        wait_until(lambda: log.read_text().count("start") == 3, timeout=60, what="a third job to start")
        assert _procctl_tasks(cluster) == 3
        for item in range(1, 7):
            Path(f"{go}-{item}").touch()
        assert proc.wait(timeout=120) == 0
    finally:
        for item in range(1, 7):
            Path(f"{go}-{item}").touch()
    assert log.read_text().count("end") == 6


def test_jobs_start_in_the_pool_order(project: Project, cluster: Cluster) -> None:
    """Twenty jobs through a window of 4: each starts in item order (Dask
    would otherwise favour the newest task it was given)."""
    _manifest(
        project,
        """
        [process.order]
        cmd = "echo $PROCCTL_ITEM >> order.txt; sleep 0.2"
        each = { range = [1, 20] }
        """,
    )
    result = project.run("run", "--plain", "-j", "4", "--executor", cluster.url, timeout=120)
    assert result.returncode == 0, result.stderr
    started = [int(item) for item in (project.root / "order.txt").read_text().split()]
    assert sorted(started) == list(range(1, 21))
    # In flight at most 4 at once: an item never starts before one 4 places earlier.
    assert all(started.index(item) <= item - 1 + 3 for item in started)
    assert started[:4] != list(range(20, 16, -1))


def test_a_memory_request_that_fits_no_worker_is_an_error_at_once(project: Project, cluster: Cluster) -> None:
    _manifest(
        project,
        """
        [process.big]
        cmd = "touch ran-$PROCCTL_ITEM"
        each = [1, 2]
        limits = { memory = "2GiB" }
        """,
    )
    result = project.run("run", "--plain", "--executor", cluster.url)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"procctl: process.big.limits.memory: 2.0GiB fits no worker of {cluster.address} (the largest `memory` resource is 1.0GiB)\n"
    assert not list(project.root.glob("ran-*"))


def test_memory_limits_are_admitted_against_the_workers_memory(project: Project, cluster: Cluster) -> None:
    """Four jobs of 600 MiB on workers of 1 GiB (2 threads each): one per
    worker at a time; the others wait on their worker for the memory, not
    for a thread."""
    log, go = project.root / "hold.log", project.root / "go"
    _manifest(
        project,
        f"""
        [process.fat]
        cmd = "{PY} {HELPERS}/hold.py {log} {go}"
        each = {{ range = [1, 4] }}
        limits = {{ memory = "600MiB" }}
        """,
    )

    def constrained(dask_worker: Any = None) -> int:
        return sum(1 for key, task in dask_worker.state.tasks.items() if str(key).startswith("procctl-") and task.state == "constrained")

    proc = _supervise(project, "--plain", "-j", "4", "--executor", cluster.url)
    try:
        wait_until(lambda: log.exists() and log.read_text().count("start") == 2, timeout=60, what="two jobs to start")
        with cluster.client() as client:
            wait_until(lambda: sum(client.run(constrained).values()) == 2, timeout=60, what="two jobs to wait for memory")
        assert log.read_text().count("start") == 2
        go.touch()
        assert proc.wait(timeout=120) == 0
    finally:
        go.touch()
    assert log.read_text().count("end") == 4


def test_kill_a_timeout_and_ctrl_c_leave_no_process_of_the_job(project: Project, cluster: Cluster) -> None:
    """Each job is a tree: a child in its group and one that left it
    (setsid). `procctl kill`, the job's `timeout` and Ctrl-C each end the
    whole tree on its worker."""
    _manifest(
        project,
        f"""
        [settings]
        fail_fast = false

        [process.killed]
        cmd = ["{PY}", "{HELPERS}/tree.py", "{project.root}/killed-{{item}}"]
        each = [1]

        [process.timed]
        cmd = ["{PY}", "{HELPERS}/tree.py", "{project.root}/timed-{{item}}"]
        each = [1]
        timeout = "3s"
        stop_timeout = "1s"

        [process.interrupted]
        cmd = ["{PY}", "{HELPERS}/tree.py", "{project.root}/interrupted-{{item}}"]
        each = [1]
        """,
    )

    def tree(name: str) -> list[int]:
        path = project.root / f"{name}-1"
        wait_until(path.exists, timeout=60, what=f"{name}'s tree")
        return [int(pid) for pid in path.read_text().split()]

    proc = _supervise(project, "--plain", "--executor", cluster.url)
    try:
        killed, timed, interrupted = tree("killed"), tree("timed"), tree("interrupted")
        assert len(_living(killed + timed + interrupted)) == 9
        assert project.run("kill", "killed").returncode == 0
        wait_until(lambda: not _living(killed), timeout=30, what="the killed tree to be gone")
        wait_until(lambda: not _living(timed), timeout=30, what="the timed-out tree to be gone")
        assert len(_living(interrupted)) == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        wait_until(lambda: not _living(interrupted), timeout=30, what="the interrupted tree to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
    # How each ended, as the history has it: the signal that ended the job on its worker.
    history = json.loads(project.run("history", "--json", "-n", "10").stdout)["runs"]
    ended = {row["instance"]: (row["state"], row["signal"]) for row in history}
    assert ended == {"killed[1]": ("stopped", 15), "timed[1]": ("timed_out", 15), "interrupted[1]": ("stopped", 15)}


def test_a_killed_workers_job_is_retried_once_and_never_runs_twice_at_once(project: Project, cluster: Cluster) -> None:
    """1. The job takes a lock (a second run at once would find it taken and
       exit 99) and holds until released.
    2. Its worker process is SIGKILLed: the job's tree dies with it, its
       run fails with the worker named, and restart = on-failure (once)
       starts attempt 2 — only once the first is gone.
    3. Released, attempt 2 ends well: two rows in the history (failed,
       then exited), the events say attempt 2."""
    cluster.workers_up()
    log, go, lock = project.root / "hold.log", project.root / "go", project.root / "lock"
    _manifest(
        project,
        f"""
        [process.once]
        cmd = ["{PY}", "{HELPERS}/hold.py", "{log}", "{go}", "{lock}"]
        each = [1]
        restart = "on-failure"
        max_restarts = 1
        backoff = "0s"
        """,
    )
    proc = _supervise(project, "--plain", "--executor", cluster.url, "--events", "ev.jsonl")
    try:
        wait_until(lambda: log.exists() and "start" in log.read_text(), timeout=60, what="the job to start")
        first = int(log.read_text().split()[1])
        worker = psutil.Process(first).parent()
        assert worker is not None and "spawn_main" in " ".join(worker.cmdline())
        worker.kill()
        wait_until(lambda: not _living([first]), timeout=30, what="the first attempt to die with its worker")
        wait_until(lambda: log.read_text().count("start") == 2, timeout=120, what="the second attempt")
        go.touch()
        assert proc.wait(timeout=120) == 0
    finally:
        go.touch()
    assert "busy" not in log.read_text()
    events = _events(project.root / "ev.jsonl")
    assert [event["attempt"] for event in events if event["event"] == "started"] == [1, 2]
    restarting = [event for event in events if event["event"] == "restarting"]
    assert len(restarting) == 1 and "was lost" in restarting[0]["reason"]
    history = json.loads(project.run("history", "once", "--json").stdout)["runs"]
    assert [(row["state"], row["restarts"]) for row in reversed(history)] == [("failed", 0), ("exited", 1)]
    cluster.workers_up()


def test_rerun_failed_runs_exactly_the_failed_items_on_the_cluster(project: Project, cluster: Cluster) -> None:
    _manifest(
        project,
        """
        [settings]
        fail_fast = false

        [process.items]
        cmd = 'echo "$PROCCTL_ITEM" >> ran.txt; test ! -e "fail-$PROCCTL_ITEM"'
        each = ["a", "b", "c", "d"]
        """,
    )
    (project.root / "fail-b").touch()
    (project.root / "fail-d").touch()
    assert project.run("run", "--plain", "--executor", cluster.url, "--junit", "junit.xml").returncode == 1
    # The JUnit report of a run on the cluster: a case per job, the failed ones failures.
    from xml.etree import ElementTree

    cases = {case.get("name"): case.find("failure") is not None for case in ElementTree.parse(project.root / "junit.xml").iter("testcase")}
    assert cases == {"items[1]": False, "items[2]": True, "items[3]": False, "items[4]": True}
    ran = project.root / "ran.txt"
    assert sorted(ran.read_text().split()) == ["a", "b", "c", "d"]
    ran.unlink()
    (project.root / "fail-d").unlink()
    again = project.run("run", "--plain", "--rerun-failed", "--executor", cluster.url)
    assert again.returncode == 1 and sorted(ran.read_text().split()) == ["b", "d"]
    assert "items[2]" in again.stdout and "items[4]" in again.stdout and "items[1]" not in again.stdout


def test_pause_and_resume_stop_and_continue_the_job_on_its_worker(project: Project, cluster: Cluster) -> None:
    log, go = project.root / "hold.log", project.root / "go"
    _manifest(project, f'[process.p]\ncmd = "{PY} {HELPERS}/hold.py {log} {go}"\neach = [1]\n')

    def state(pid: int) -> str:
        return psutil.Process(pid).status()

    proc = _supervise(project, "--plain", "--executor", cluster.url)
    try:
        wait_until(lambda: log.exists() and "start" in log.read_text(), timeout=60, what="the job to start")
        pid = int(log.read_text().split()[1])
        assert project.run("pause", "p").returncode == 0
        wait_until(lambda: state(pid) == psutil.STATUS_STOPPED, timeout=30, what="the job to be stopped")
        assert project.status()["instances"][0]["state"] == "paused"  # type: ignore[index]
        # The view's table of a run on the cluster, as `top` shows it.
        once = project.run("top", "--once")
        assert once.returncode == 0 and "p[1]" in once.stdout and "paused" in once.stdout
        assert project.run("resume", "p").returncode == 0
        wait_until(lambda: state(pid) != psutil.STATUS_STOPPED, timeout=30, what="the job to go on")
        # Its worker samples its tree every metrics_interval_s: the job ends
        # only once a sample has come back (a job that ends before its first
        # sample has no peak RSS, here as on a local run).
        wait_until(lambda: _peak_rss(project) > 1 << 20, timeout=60, what="a sample of the job from its worker")
        go.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        go.touch()
    # Sampled on its worker while it ran: its peak RSS and CPU time are in the history.
    row = json.loads(project.run("history", "p", "--json").stdout)["runs"][0]
    assert (row["state"], row["exit_code"]) == ("exited", 0) and row["peak_rss_bytes"] > 1 << 20 and row["cpu_time_s"] is not None


def test_a_scheduler_that_cannot_be_reached_is_one_line(project: Project, cluster: Cluster) -> None:
    _manifest(project, '[process.j]\ncmd = "touch ran"\neach = [1]\n')
    result = project.run("run", "--plain", "--executor", "dask://127.0.0.1:9", timeout=60)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("procctl: cannot reach the Dask scheduler at tcp://127.0.0.1:9: ") and result.stderr.count("\n") == 1
    assert not (project.root / "ran").exists()


def test_workers_that_cannot_import_procctl_are_one_line_naming_it(project: Project, tmp_path: Path) -> None:
    """A scheduler and a worker whose Python finds no procctl (a package of
    that name first on their path that fails as a missing one does):
    `run --executor` exits 2 with one line naming the module and how to
    install it there, and runs nothing."""
    stub = tmp_path / "no-procctl" / "procctl"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'procctl'\", name='procctl')\n")
    # Not the checkout's directory: `python -m` puts the current one first on the path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(stub.parent)}
    scheduler_file = elsewhere / "scheduler.json"
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*argv: str) -> None:
        started.append(
            subprocess.Popen([PY, "-m", *argv], cwd=elsewhere, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))  # fmt: skip
        )

    try:
        spawn("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(scheduler_file),
              "--no-dashboard", "--dashboard-address", "127.0.0.1:0")  # fmt: skip
        wait_until(lambda: scheduler_file.exists() and scheduler_file.read_text().endswith("}"), timeout=120, what="the scheduler")
        address = json.loads(scheduler_file.read_text())["address"]
        spawn("distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--no-nanny", "--nthreads", "1",
              "--no-dashboard", "--dashboard-address", "127.0.0.1:0")  # fmt: skip
        _manifest(project, '[process.j]\ncmd = "touch ran-$PROCCTL_ITEM"\neach = [1]\n')
        result = project.run("run", "--plain", "--executor", "dask://" + address.split("://", 1)[1], timeout=120)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == (
            f"procctl: the Dask workers of {address} cannot import procctl (No module named 'procctl'): "
            f"install it where they run: pip install 'procctl[dask]=={__version__}'\n"
        )
        assert not list(project.root.glob("ran-*"))
        listening = [conn for conn in psutil.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN and conn.pid in {p.pid for p in started}]
        assert listening and {conn.laddr.ip for conn in listening} == {"127.0.0.1"}, listening
    finally:
        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()

"""The worker's side: procctl's jobs as processes of a Dask worker's machine.

`run_job` is the Dask task. It runs on one of the worker's threads: it starts
the command in a session of its own with the job's environment, working
directory and rlimits (`engine.limits.preexec`, the code that sets them
here), has its pipes read and sent back (`cluster.job`), and says how it
ended. `JobPlugin`, a worker plugin, holds what outlives one job on that
worker: the guardian that ends every job's tree if the worker dies (a
`PR_SET_PDEATHSIG` reaches only the direct child, the guardian whole trees),
the sampler of each job's tree, and the enforcer of `memory` and
`cpu_percent` (a cgroup where the worker may make one, else the watchdog and
the duty cycle: `engine.enforcer`, as here). It also sees the scheduler
release a task: a job whose task is cancelled, or whose client went away,
has its tree killed then and there — no cooperation of the job is needed.

`signal_job`, `kill_job`, `ack_job` and `facts` are what procctl calls on
the worker with `Client.run`. Everything here must be importable where the
workers run: procctl is installed there too (`pip install procctl[dask]`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from distributed import WorkerPlugin, get_worker

from procctl import __version__, events
from procctl.cluster.job import Pump, WorkerJob
from procctl.cluster.linux import die_with_parent
from procctl.cluster.wire import PLUGIN_PREFIX, JobSpec, message
from procctl.engine import childenv, limits
from procctl.engine.enforcer import Enforcer, close_fds
from procctl.engine.guardian import TOKEN_VAR, Guardian
from procctl.engine.metrics import Sampler

if TYPE_CHECKING:
    from distributed import Worker

    from procctl.config.manifest import Limits

PLUGIN_NAME = PLUGIN_PREFIX + __version__

T = TypeVar("T")


def _preexec(job_limits: Limits, nice: int | None, join_fds: list[int]) -> Callable[[], None] | None:
    """Between fork and exec: the job's limits, as here, and when there are
    any, PR_SET_PDEATHSIG too (it dies with the worker's thread that started
    it). Without limits there is no pre-exec function, so that the spawn
    takes the fast vfork path (a fork of a worker cost 24 ms a job,
    measured): the guardian alone then ends the tree with its worker."""
    then = limits.preexec(job_limits, nice, join_fds)
    return die_with_parent(signal.SIGKILL, then) if then is not None else None



class JobPlugin(WorkerPlugin):
    """procctl's jobs on one worker (see the module's text)."""

    idempotent = True
    """Registered by every run; the first registration stands (a second one
    would tear this down, and with it the jobs of a run under way)."""

    def __init__(self) -> None:
        # Only the name travels (pickled to the scheduler, then to each
        # worker); everything else is made in `setup`, on the worker.
        self.name = PLUGIN_NAME

    def setup(self, worker: Worker) -> None:
        self.worker = worker
        self.loop = asyncio.get_running_loop()
        self.jobs: dict[str, WorkerJob] = {}
        self._lock = threading.Lock()
        self._let_go: set[str] = set()
        """Tasks the scheduler let go of while they executed, before their
        job was registered: the job is killed as soon as it is."""
        self._by_pid: dict[int, WorkerJob] = {}
        self.guardian = Guardian()
        self.enforcer = Enforcer(1.0, self._breached, self._notice)
        self.enforcer.open((self.guardian.pid,))
        self.sampler = Sampler(1.0, self._sampled)
        self.sampler.start()

    def teardown(self, worker: Worker) -> None:
        for job in list(self.jobs.values()):
            job.kill()
        self.sampler.stop()
        self.enforcer.close()
        self.guardian.close()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # The scheduler let go of the task (procctl cancelled it, or its
        # client is gone): its job must not outlive it.
        if finish not in ("released", "cancelled", "forgotten"):
            return
        with self._lock:
            job = self.jobs.get(key)
            if job is None and start == "executing":
                self._let_go.add(key)
        if job is not None:
            job.kill()

    def _register(self, job: WorkerJob) -> None:
        with self._lock:
            self.jobs[job.spec.key] = job
            let_go = job.spec.key in self._let_go
            self._let_go.discard(job.spec.key)
        if let_go:
            job.kill()

    def _unregister(self, job: WorkerJob) -> None:
        with self._lock:
            self.jobs.pop(job.spec.key, None)
            self._let_go.discard(job.spec.key)

    # ------------------------------------------------ on the worker's loop

    def _on_loop(self, call: Callable[[], T]) -> T:
        """Run `call` on the worker's event loop and wait for its answer."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(call())
            except BaseException as exc:  # handed back to the job's thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result()

    def _began(self, job: WorkerJob) -> None:
        spec = job.spec
        self.guardian.watch(job.pid)
        self.sampler.interval_s = min(self.sampler.interval_s, max(spec.metrics_interval_s, 0.05))
        self.enforcer.metrics_interval_s = self.sampler.interval_s
        job.meter = self.sampler.track(spec.name, spec.name, job.pid)
        self._by_pid[job.pid] = job
        self.enforcer.apply(job)

    def _ended(self, job: WorkerJob, usage: resource.struct_rusage | None) -> events.Sample | None:
        self._by_pid.pop(job.pid, None)
        self.guardian.forget(job.pid)
        # (An OOM kill the kernel made is seen here, and becomes the job's cut.)
        self.enforcer.ended(job)
        if job.meter is None:
            return None
        self.sampler.untrack(job.meter)
        return job.meter.close(usage)

    def _sampled(self, sample: events.Event) -> None:
        if not isinstance(sample, events.Sample):
            return
        job = self._by_pid.get(sample.pid)
        if job is None or not job.running:
            return
        self.enforcer.sampled(job, sample)
        usage = [sample.cpu_time_s, sample.rss_bytes, sample.read_bytes, sample.write_bytes, sample.threads, sample.children]
        self.worker.log_event(job.spec.topic, message("use", job.spec.key, r=job.token, u=usage))

    def _breached(self, job: Any, limit: str, value: float, maximum: float, mechanism: str, reason: str) -> None:
        if job.cut is not None or not job.running:
            return
        job.cut, job.why, job.breach = "limit", reason, [limit, value, maximum, mechanism]
        self.loop.create_task(self._stop(job))

    def _notice(self, job: Any, text: str) -> None:
        pass  # A cgroup the worker refused: the watchdog and the duty cycle hold the limits instead.

    async def _stop(self, job: WorkerJob) -> None:
        """Stop as here: the stop signal to the group, SIGKILL after the stop timeout."""
        self.enforcer.stopping(job)
        job.stop(job.spec.stop_signal)
        deadline = time.monotonic() + job.spec.stop_timeout_s
        while job.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if job.running:
            job.kill()

    # --------------------------------------------------- in the job's thread

    def run(self, spec: JobSpec) -> dict[str, Any]:
        """Run one attempt to its end (this is the Dask task's thread)."""
        job = WorkerJob(spec)
        worker = self.worker
        join_fds: list[int] = []
        if spec.limits.memory is not None or spec.limits.cpu_percent is not None:
            join_fds = self._on_loop(lambda: self.enforcer.join_fds(job))
        env = {key: value for key, value in os.environ.items() if key not in childenv.stale()}
        env.update(spec.env)
        env[TOKEN_VAR] = self.guardian.token
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        try:
            popen = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout_w,
                stderr=stderr_w,
                cwd=spec.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_preexec(spec.limits, spec.nice, join_fds),
            )
        except BaseException as exc:
            os.close(stdout_r)
            os.close(stderr_r)
            with self._lock:
                self._let_go.discard(spec.key)
            why = _spawn_error(exc, spec, worker.address)
            worker.log_event(spec.topic, message("fail", spec.key, w=worker.address, why=why))
            return {"started": False, "why": why}
        finally:
            os.close(stdout_w)
            os.close(stderr_w)
            close_fds(join_fds)
        job.pid, job.started_at = popen.pid, time.time()
        self._register(job)
        try:
            self.loop.call_soon_threadsafe(self._began, job)
            worker.log_event(spec.topic, message("start", spec.key, r=job.token, w=worker.address, pid=job.pid, t=job.started_at))
            returncode, usage = Pump(worker, job, popen, {stdout_r: 1, stderr_r: 2}).run()
            ended_at = time.time()
        finally:
            self._unregister(job)
        # The rest is the loop's: the end is said after its last figures and
        # any OOM kill are known, and still before the task's own end
        # (callbacks run in order), without this thread waiting for it.
        self.loop.call_soon_threadsafe(self._finish, job, returncode, usage, ended_at)
        return {"started": True, "rc": returncode}

    def _finish(self, job: WorkerJob, returncode: int, usage: resource.struct_rusage | None, ended_at: float) -> None:
        final = self._ended(job, usage)
        fields: dict[str, Any] = {"rc": returncode, "t": ended_at, "cut": job.cut, "why": job.why, "breach": job.breach}
        fields["cpu"] = [usage.ru_utime, usage.ru_stime] if usage is not None else None
        if final is not None and final.peak_rss_bytes:
            fields["peak"] = [final.cpu_time_s, final.peak_rss_bytes]
        self.worker.log_event(job.spec.topic, message("end", job.spec.key, r=job.token, **fields))


def _spawn_error(exc: BaseException, spec: JobSpec, where: str) -> str:
    if isinstance(exc, FileNotFoundError):
        if not os.path.isdir(spec.cwd):
            return f"working directory {spec.cwd} does not exist on the worker {where}"
        return f"command not found on the worker {where}: {exc.filename or spec.argv[0]}"
    if isinstance(exc, PermissionError):
        return f"cannot execute {exc.filename or spec.argv[0]} on the worker {where}: permission denied"
    if isinstance(exc, subprocess.SubprocessError):
        return f"cannot apply limits to {spec.argv[0]} on the worker {where}: {exc}"
    if isinstance(exc, OSError):
        return f"cannot start {spec.argv[0]} on the worker {where}: {exc.strerror or exc}"
    return f"cannot start {spec.argv[0]} on the worker {where}: {exc!r}"



# ------------------------------------------- what procctl calls on the worker


def run_job(spec: JobSpec) -> dict[str, Any]:
    """The Dask task: run one attempt of one job on this worker."""
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, JobPlugin):
        raise RuntimeError(f"procctl's worker plugin {PLUGIN_NAME} is not on the worker {worker.address}")
    return plugin.run(spec)


def _job(dask_worker: Worker, key: str, token: str) -> WorkerJob | None:
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    job = plugin.jobs.get(key) if isinstance(plugin, JobPlugin) and hasattr(plugin, "jobs") else None
    return job if job is not None and job.token == token else None


def signal_job(key: str, token: str, sig: int, tree: bool = False, dask_worker: Worker | None = None) -> bool:
    """Deliver `sig` to the job's group (and with `tree` to every descendant):
    `procctl kill --signal`, the stop signal, SIGSTOP and SIGCONT."""
    assert dask_worker is not None
    job = _job(dask_worker, key, token)
    return job is not None and job.signal(sig, tree=tree)


def stop_job(key: str, token: str, sig: int, dask_worker: Worker | None = None) -> bool:
    """A graceful stop of the job's tree (procctl sends SIGKILL later if need be)."""
    assert dask_worker is not None
    job = _job(dask_worker, key, token)
    return job is not None and job.stop(sig)


def kill_job(key: str, token: str, dask_worker: Worker | None = None) -> bool:
    """SIGKILL the job's whole tree now."""
    assert dask_worker is not None
    job = _job(dask_worker, key, token)
    if job is None:
        return False
    job.kill()
    return True


def ack_job(key: str, token: str, received: int, dask_worker: Worker | None = None) -> None:
    """procctl has received `received` bytes of the job's output."""
    assert dask_worker is not None
    job = _job(dask_worker, key, token)
    if job is not None and received > job.acked_bytes:
        job.acked_bytes = received
        job.acked.set()


def facts(dask_worker: Worker | None = None) -> dict[str, Any]:
    """What procctl checks of a worker before it sends it jobs."""
    assert dask_worker is not None
    return {
        "procctl": __version__,
        "nthreads": dask_worker.state.nthreads,
        "memory_limit": dask_worker.memory_manager.memory_limit or 0,
        "resources": dict(dask_worker.state.total_resources),
        "plugin": isinstance(dask_worker.plugins.get(PLUGIN_NAME), JobPlugin),
    }

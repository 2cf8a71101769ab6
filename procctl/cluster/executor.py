"""`each` jobs on a Dask cluster: the executor behind the engine's seam
(`engine.child`), on procctl's side.

`DaskExecutor.connect` reaches the scheduler, checks that the workers can
run procctl's task (procctl of the same version importable there) and that
every `memory` limit fits some worker, and installs the worker plugin
(`cluster.worker`). Each run of a job is then a `RemoteChild`: a task
submitted when the pool lets the job start — so the pool's bound (`-j`,
`max_parallel`, `auto`, `procctl pool`) is the window of tasks in flight
on the cluster — with a priority that keeps the pool's order. What the job
writes comes back in batches on the run's event topic and goes to its log
file first, then to the same line splitter and callback as a local child's;
its usage feeds the same meters; its exit, its CPU time and peak RSS go
into the history.

Stopping, killing, pausing and signals reach the job's tree on its worker
through `Client.run`; a task that is cancelled is killed by the worker
plugin. A job whose worker is lost ends as failed (`Cut.LOST`), and the
restart policy decides, as for any failure: Dask's own re-run of the task
elsewhere is stopped at once, so an attempt never runs twice at once.

Dask's client runs its own event loop in a thread; what it hears is handed
to procctl's loop in batches (`_Inbox`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import resource
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from procctl import __version__
from procctl.cluster.wire import WINDOW_BYTES, JobSpec
from procctl.config.command import argv_of
from procctl.engine import childenv
from procctl.engine.child import Breach, Exit, SpawnRequest
from procctl.engine.metrics import TreeUsage
from procctl.engine.outcome import Cut
from procctl.engine.lines import LineSplitter
from procctl.errors import ClusterError, SpawnError
from procctl.units import format_size

if TYPE_CHECKING:
    from distributed import Client, Future

    from procctl.config.manifest import Manifest, ProcessSpec
    from procctl.engine.tree import ProcessTree

CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 30.0
"""How long `connect` waits for a first worker to join the scheduler."""
END_GRACE_S = 5.0
"""After a task is done, how long its last message may keep us waiting."""
KILL_GRACE_S = 5.0
"""After SIGKILL was sent, how long the end of a job may take to be heard
before it counts as lost with its worker."""
MAX_REQUEUES = 3
"""How often a task that never started is submitted again after its worker
died under it (it never ran: no attempt is spent)."""
_STREAMS = {1: "stdout", 2: "stderr"}


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"executor = \"dask\" needs Dask's distributed scheduler, which is not installed ({exc.name}): pip install 'procctl[dask]'") from None
    return distributed


class DaskExecutor:
    """The children of one run, as tasks of one Dask cluster."""

    remote = True

    def __init__(self, client: Client, address: str, workers: Mapping[str, Mapping[str, Any]], manifest: Manifest) -> None:
        self._client = client
        self._manifest = manifest
        self.address = address
        self.workers = dict(workers)
        """What each worker said of itself at the start (`worker.facts`)."""
        self._memory_resource = any("memory" in facts["resources"] for facts in self.workers.values())
        """The workers declare a `memory` resource: jobs with a `memory`
        limit ask for that much of it, and Dask admits them accordingly."""
        self._run = secrets.token_hex(4)
        self.topic = f"procctl-{self._run}"
        """The event topic this run's jobs talk on."""
        self._seq = itertools.count()
        self._children: dict[str, RemoteChild] = {}
        """By task key: every child whose task is out there."""
        self._inbox: _Inbox | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.runs_once = True
        """The scheduler took `_runs_once`: it never runs a task of procctl's
        again by itself when its worker dies."""

    # ------------------------------------------------------------- set-up

    @classmethod
    def connect(cls, address: str, manifest: Manifest, *, workers_timeout_s: float = WORKERS_TIMEOUT_S) -> DaskExecutor:
        """Reach the scheduler and check its workers (see the module's
        text). Raises ClusterError, in one line, naming what is wrong."""
        distributed = _import_distributed()
        from procctl.cluster import worker

        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {_describe(exc)}") from None
        try:
            try:
                client.wait_for_workers(1, timeout=workers_timeout_s)
            except (TimeoutError, distributed.TimeoutError):
                raise ClusterError(f"no worker joined the Dask scheduler at {address} within {workers_timeout_s:g}s") from None
            try:
                found = client.run(worker.facts)
            except Exception as exc:  # noqa: BLE001 - what the workers could not do, said in one line
                missing = _missing_module(exc)
                if missing is None:
                    raise
                raise ClusterError(_import_problem(missing, exc, address)) from None
            versions = {facts["procctl"] for facts in found.values()}
            if versions != {__version__}:
                raise ClusterError(
                    f"the Dask workers of {address} run procctl {', '.join(sorted(versions))}, this is {__version__}: install the same version there"
                )
            executor = cls(client, address, found, manifest)
            executor._check_memory([spec for spec in manifest.processes.values() if spec.executor == "dask"])
            client.register_plugin(worker.JobPlugin())
            try:
                client.register_plugin(_runs_once())
            except Exception:  # noqa: BLE001 - a scheduler that takes no pickled plugin: see RemoteChild._heard_start
                executor.runs_once = False
        except ClusterError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise ClusterError(f"the Dask cluster at {address} refused procctl's worker plugin: {_describe(exc)}") from None
        except BaseException:
            client.close()
            raise
        return executor

    def _check_memory(self, processes: Sequence[ProcessSpec]) -> None:
        """A job whose `memory` fits no worker would wait for ever: say so now."""
        for spec in processes:
            memory = spec.limits.memory
            if memory is None:
                continue
            if self._memory_resource:
                offered = [facts["resources"].get("memory", 0) for facts in self.workers.values()]
                what = "`memory` resource"
            else:
                offered = [facts["memory_limit"] or 0 for facts in self.workers.values()]
                if any(limit == 0 for limit in offered):
                    continue  # A worker without a memory limit takes any job.
                what = "memory limit"
            largest = max(offered, default=0)
            if memory > largest:
                raise ClusterError(
                    f"process.{spec.name}.limits.memory: {format_size(memory)} fits no worker of {self.address} "
                    f"(the largest {what} is {format_size(largest)})"
                )

    @property
    def threads(self) -> int:
        """The worker threads the cluster had at the start: the most jobs it runs at once."""
        return sum(int(facts["nthreads"]) for facts in self.workers.values())

    # ------------------------------------------------------- the run

    def __enter__(self) -> DaskExecutor:
        self._loop = asyncio.get_running_loop()
        self._inbox = _Inbox(self._loop, self._dispatch)
        self._client.subscribe_topic(self.topic, self._inbox.put)
        self._client.subscribe_topic("all", self._inbox.put)
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever is still out there is cancelled (the worker plugin kills
        its tree), and the client lets go of the scheduler."""
        client = self._client
        futures = [child.future for child in self._children.values() if child.future is not None]
        self._children.clear()
        if self._inbox is not None:
            self._inbox.close()
        try:
            if futures:
                client.cancel(futures, force=True)
            client.unsubscribe_topic(self.topic)
            client.unsubscribe_topic("all")
            client.run_on_scheduler(_forget_topic(self.topic))
        except Exception:  # noqa: BLE001 - the scheduler may be gone; the run is over either way
            pass
        client.close(timeout=CONNECT_TIMEOUT_S)

    def close(self) -> None:
        """Let go of a cluster that was never used for a run."""
        self._client.close(timeout=CONNECT_TIMEOUT_S)

    @property
    def env(self) -> Mapping[str, str]:
        # A job starts from its worker's environment, not from this one's.
        return {}

    @property
    def companions(self) -> tuple[int, ...]:
        return ()

    def child(self, request: SpawnRequest) -> RemoteChild:
        return RemoteChild(self, request)

    # ------------------------------------------------------ submitting

    def submit(self, child: RemoteChild, spec_of: Callable[[str, str], JobSpec]) -> Future:
        """Send a run of `child` out as a new task; the pool's order is kept
        by priorities (earlier first: Dask would otherwise favour the newest)."""
        from procctl.cluster import worker

        seq = next(self._seq)
        key = f"procctl-{self._run}-{seq}"
        spec = spec_of(key, self.topic)
        resources = {"memory": spec.limits.memory} if self._memory_resource and spec.limits.memory else None
        self._children[key] = child
        future = self._client.submit(worker.run_job, spec, key=key, priority=-seq, pure=False, retries=0, resources=resources)
        loop = self._loop
        assert loop is not None

        def done(future: Future) -> None:
            try:
                loop.call_soon_threadsafe(self._done, key, future)
            except RuntimeError:
                pass  # The loop is closed: the run is over.

        future.add_done_callback(done)
        return future

    def stopping(self, request: SpawnRequest) -> tuple[int, float, float]:
        """How the worker stops the job when it breaks a limit there (stop
        signal, stop timeout), and how often it samples its tree: the
        process's own settings, found by the name its environment gives."""
        settings = self._manifest.settings
        spec = self._manifest.processes.get(request.env.get(childenv.PROCESS, ""))
        if spec is None:
            return int(signal.SIGTERM), settings.stop_timeout_s, settings.metrics_interval_s
        timeout = spec.stop_timeout_s if spec.stop_timeout_s is not None else settings.stop_timeout_s
        return spec.stop_signal, timeout, settings.metrics_interval_s

    def forget(self, key: str) -> None:
        self._children.pop(key, None)

    async def call(self, worker_address: str, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on one worker (the worker plugin's verbs)."""
        return await asyncio.to_thread(self._client.run, function, *args, workers=[worker_address])

    def cancel(self, future: Future) -> None:
        """Cancel a task without waiting for the scheduler's answer."""
        client = self._client

        def cancel() -> None:
            try:
                client.cancel([future], force=True)
            except Exception:  # noqa: BLE001 - the scheduler is gone: so is the task
                pass

        threading.Thread(target=cancel, name="procctl-cancel", daemon=True).start()

    # ------------------------------------------------------ what it hears

    def _dispatch(self, event: Any) -> None:
        message = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
        if not isinstance(message, dict):
            return
        if message.get("action") == "remove-worker":
            gone = message.get("worker")
            for child in list(self._children.values()):
                if child.worker == gone:
                    child.lost(f"its worker {gone} was lost")
            return
        child = self._children.get(message.get("k"))  # type: ignore[arg-type]
        if child is not None:
            child.heard(message)

    def _done(self, key: str, future: Future) -> None:
        child = self._children.get(key)
        if child is not None and child.future is future:
            child.task_done(future)


class _Inbox:
    """Messages from the client's thread, handed to procctl's loop in batches:
    one wake-up of the loop for whatever came meanwhile."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handle: Callable[[Any], None]) -> None:
        self._loop = loop
        self._handle = handle
        self._queue: collections.deque[Any] = collections.deque()
        self._scheduled = False
        self._closed = False

    def put(self, event: Any) -> None:
        if self._closed:
            return
        self._queue.append(event)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._closed = True

    def _drain(self) -> None:
        self._scheduled = False
        queue, handle = self._queue, self._handle
        while queue:
            event = queue.popleft()
            handle(event)
            if queue and _is_start(event):
                # The job's runner goes first (it announces the start): what
                # the job wrote follows its `started` event, as for a local child.
                self._scheduled = True
                self._loop.call_soon(self._drain)
                return

    def close(self) -> None:
        self._closed = True


class RemoteChild:
    """One run of one job as a task on the cluster: the remote `ChildProcess`."""

    def __init__(self, executor: DaskExecutor, request: SpawnRequest) -> None:
        self._executor = executor
        self._request = request
        self.pid = 0
        """Its pid on its worker, once it started there."""
        self.started_at = 0.0
        self.worker: str | None = None
        """The worker it runs on, once it started."""
        self.future: Future | None = None
        self._key = ""
        self._token: str | None = None
        self._loop = asyncio.get_running_loop()
        self._started: asyncio.Future[int] = self._loop.create_future()
        self._ended: asyncio.Future[Exit] = self._loop.create_future()
        self._splitters = {1: LineSplitter(), 2: LineSplitter()}
        self._received = 0
        self._acked = 0
        self._ack_waits = False
        """An acknowledgement waits for the output's flow to be released."""
        self._requeues = 0
        self._given_up = False
        self._control: asyncio.Task[Any] | None = None
        """The last verb sent to its worker: verbs go one after another."""

    # --------------------------------------------------------- the seam

    @property
    def running(self) -> bool:
        """It started on its worker and has not ended (as far as procctl heard)."""
        started = self._started
        return started.done() and not started.cancelled() and started.exception() is None and not self._ended.done()

    async def start(self) -> int:
        self._submit()
        try:
            return await asyncio.shield(self._started)
        except asyncio.CancelledError:
            # Stopped while still queued on the cluster: its task is given
            # up there (the worker plugin ends it, should it have begun).
            self._give_up(SpawnError("stopped before it started on the cluster"))
            if self.future is not None and self.running:
                self._executor.cancel(self.future)  # it began meanwhile
            if self._started.done() and not self._started.cancelled():
                self._started.exception()  # retrieved: nobody awaits it now
            raise

    def _submit(self) -> None:
        request = self._request
        argv = argv_of(request.cmd)

        stop_signal, stop_timeout_s, metrics_interval_s = self._executor.stopping(request)

        def spec(key: str, topic: str) -> JobSpec:
            self._key = key
            return JobSpec(
                key=key, topic=topic, argv=argv, cwd=str(request.cwd), env=dict(request.env), limits=request.limits,
                nice=request.nice, stop_signal=stop_signal, stop_timeout_s=stop_timeout_s,
                metrics_interval_s=metrics_interval_s, name=request.env.get(childenv.INSTANCE, key),
            )  # fmt: skip

        self.future = self._executor.submit(self, spec)

    async def wait(self) -> Exit:
        return await self._ended

    async def stop(self, stop_signal: int, timeout_s: float, known: ProcessTree | None = None) -> bool:
        if not self.running:
            return False
        self._verb("stop", stop_signal)
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), timeout_s)
            return False
        except TimeoutError:
            pass
        self.kill()
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), KILL_GRACE_S)
        except TimeoutError:
            self.lost(f"its worker {self.worker} did not answer a SIGKILL within {KILL_GRACE_S:g}s")
        return True

    def kill(self, known: ProcessTree | None = None) -> None:
        if not self._started.done():
            # Still queued on the cluster: its start is given up.
            self._give_up(SpawnError("stopped before it started on the cluster"))
            return
        if self.running:
            self._verb("kill")
            if self.future is not None:
                self._executor.cancel(self.future)

    def send_signal(self, sig: int) -> bool:
        if not self.running:
            return False
        self._verb("signal", sig)
        return True

    def suspend(self, known: ProcessTree | None = None) -> None:
        self._verb("signal", signal.SIGSTOP, True)

    def resume(self, known: ProcessTree | None = None) -> None:
        self._verb("signal", signal.SIGCONT, True)

    def write_stdin(self, data: bytes) -> bool:
        return False  # Its stdin on the worker is /dev/null.

    # ------------------------------------------------- verbs to its worker

    def _verb(self, verb: str, *args: Any) -> None:
        """Send a verb to the job's worker, after the ones before it."""
        if not self.running or self.worker is None:
            return
        from procctl.cluster import worker

        function = {"signal": worker.signal_job, "stop": worker.stop_job, "kill": worker.kill_job, "ack": worker.ack_job}[verb]
        previous, address, key, token = self._control, self.worker, self._key, self._token

        async def send() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self._executor.call(address, function, key, token, *args)
            except Exception:  # noqa: BLE001 - the worker is gone; its loss is heard on its own
                pass

        self._control = self._loop.create_task(send())

    # ----------------------------------------------- what it hears back

    def heard(self, message: dict[str, Any]) -> None:
        kind = message.get("e")

        if kind == "start":
            self._heard_start(message)
            return
        if kind == "fail":
            if not self._started.done():
                self._give_up(SpawnError(str(message.get("why") or "could not start on the cluster")))
            return
        if message.get("r") != self._token or self._ended.done():
            return  # Another run of the same task, or after the end.
        if kind == "out":
            self._output(message.get("c") or ())
        elif kind == "use":
            self._usage(message.get("u"))
        elif kind == "end":
            self._end(message)

    def _heard_start(self, message: dict[str, Any]) -> None:
        if self._token is None and not self._started.done():
            self._token = str(message.get("r"))
            self.worker = str(message.get("w"))
            self.pid = int(message.get("pid") or 0)
            self.started_at = float(message.get("t") or time.time())
            self._started.set_result(self.pid)
            return
        if message.get("r") == self._token:
            return
        # Dask started the task again, on another worker: its first worker
        # was lost. That run is not ours to make: it is stopped now, and the
        # restart policy decides whether a new attempt follows.
        from procctl.cluster import worker

        other = str(message.get("w"))
        asyncio.ensure_future(self._executor.call(other, worker.kill_job, self._key, str(message.get("r"))))
        if self._started.done():
            self.lost(f"its worker {self.worker} was lost (Dask started it again on {other}, where procctl stopped it)")

    def _output(self, chunks: Sequence[Sequence[Any]]) -> None:
        request = self._request
        for fd, data in chunks:
            # The log file first: whatever happens next, the bytes are on disk.
            request.log.write(data)
            self._received += len(data)
            lines = self._splitters[fd].feed(data)
            if lines:
                request.on_output(_STREAMS[fd], lines)
        if self._received - self._acked >= WINDOW_BYTES // 2 and not self._ack_waits:
            flow = request.flow
            if flow is not None and flow.held:
                # A sink cannot keep up: the job's output waits on its worker
                # (past its window it is not read there), as a local child's would.
                self._ack_waits = True
                flow.when_released(self._ack)
            else:
                self._ack()

    def _ack(self) -> None:
        self._ack_waits = False
        if self._received > self._acked:
            self._acked = self._received
            self._verb("ack", self._received)

    def _usage(self, figures: Any) -> None:
        on_usage = self._request.on_usage
        if on_usage is None or not figures:
            return
        cpu, rss, read, write, threads, children = figures
        on_usage(TreeUsage(float(cpu), int(rss), read, write, int(threads), int(children)))

    def _end(self, message: dict[str, Any]) -> None:
        self._flush()
        peak = message.get("peak")
        if peak and self._request.on_usage is not None:
            self._request.on_usage(TreeUsage(float(peak[0]), int(peak[1]), None, None, 0, 0))
        cpu = message.get("cpu")
        usage = resource.struct_rusage((float(cpu[0]), float(cpu[1])) + (0,) * 14) if cpu else None
        breach = message.get("breach")
        self._ended.set_result(
            Exit(
                int(message["rc"]),
                usage,
                float(message.get("t") or time.time()),
                cut=Cut.LIMIT if message.get("cut") == "limit" else None,
                why=str(message.get("why") or ""),
                breach=Breach(str(breach[0]), float(breach[1]), float(breach[2]), str(breach[3])) if breach else None,
            )
        )
        self._executor.forget(self._key)

    def _flush(self) -> None:
        for fd, splitter in self._splitters.items():
            rest = splitter.flush()
            if rest:
                self._request.on_output(_STREAMS[fd], rest)

    def lost(self, why: str) -> None:
        """Its worker was lost, and the run with it."""
        if self._ended.done() or not self._started.done():
            return
        self._flush()
        self._ended.set_result(Exit(-int(signal.SIGKILL), None, time.time(), cut=Cut.LOST, why=why))
        self._executor.forget(self._key)
        if self.future is not None:
            # Dask must not run it again by itself: procctl's restart policy decides.
            self._executor.cancel(self.future)

    def _give_up(self, error: SpawnError) -> None:
        if self._started.done():
            return
        self._started.set_exception(error)
        self._executor.forget(self._key)
        if self.future is not None:
            self._executor.cancel(self.future)

    def task_done(self, future: Future) -> None:
        """The task ended on the scheduler's side."""
        status = future.status
        if status == "finished":
            if not self._started.done() or not self._ended.done():
                # Its last messages may still be on their way.
                self._loop.call_later(END_GRACE_S, self._silent, "it ended without saying how")
            return
        if status == "error":
            exc = future.exception() if future.done() else None
            if not self._started.done():
                if type(exc).__name__ == "KilledWorker" and self._requeues < MAX_REQUEUES:
                    # Its worker died before it started: it never ran.
                    self._requeues += 1
                    self._executor.forget(self._key)
                    self._submit()
                    return
                self._give_up(SpawnError(_task_error(exc, self._executor.address)))
                return
            self.lost(f"its worker {self.worker} was lost ({_describe(exc)})")
            return
        # Cancelled or lost, not by us.
        if not self._started.done():
            self._give_up(SpawnError(f"its task was {status} on the cluster before it started"))
        else:
            self.lost(f"its task was {status} on the cluster")

    def _silent(self, why: str) -> None:
        if not self._started.done():
            self._give_up(SpawnError(why))
        else:
            self.lost(why)


def _is_start(event: Any) -> bool:
    message = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
    return isinstance(message, dict) and message.get("e") == "start"


def _runs_once() -> Any:
    """A scheduler plugin, sent by value (the scheduler needs no procctl):
    a procctl task whose worker dies is not run again by Dask, whatever the
    scheduler's `allowed-failures` — it errs at once (KilledWorker), and
    procctl's restart policy decides. Dask's own retry would start the same
    attempt elsewhere while the first may still run on a worker that was
    only cut off; no setting of Dask does this for one client's tasks."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class ProcctlRunsOnce(SchedulerPlugin):  # type: ignore[misc]
        name = "procctl-runs-once"
        idempotent = True

        def update_graph(self, scheduler: Any, *, tasks: Sequence[Any] = (), **kwargs: Any) -> None:
            for key in tasks:
                if isinstance(key, str) and key.startswith("procctl-"):
                    state = scheduler.tasks.get(key)
                    if state is not None:
                        state.suspicious = max(state.suspicious, scheduler.allowed_failures)

    return ProcctlRunsOnce()


def _forget_topic(topic: str) -> Callable[..., None]:
    """A function for the scheduler (sent by value: the scheduler needs no
    procctl) that drops what it kept of the run's topic."""

    def forget(dask_scheduler: Any = None) -> None:
        try:
            dask_scheduler._broker.truncate(topic)
        except Exception:  # noqa: BLE001 - a scheduler of another version keeps it until it ages out
            pass

    return forget


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing_module(exc: BaseException) -> str | None:
    """The module a worker could not import: from an ImportError, or from
    the text of the plain Exception Dask hands back when the worker failed
    to load the function it was sent."""
    if isinstance(exc, ImportError):
        return exc.name or str(exc)
    match = re.search(r"No module named '([^']+)'", str(exc))
    return match[1] if match else None


def _import_problem(missing: str, exc: BaseException, address: str) -> str:
    if missing == "procctl" or missing.startswith("procctl."):
        return (
            f"the Dask workers of {address} cannot import procctl (No module named {missing!r}): "
            f"install it where they run: pip install 'procctl[dask]=={__version__}'"
        )
    return f"the Dask workers of {address} cannot import {missing!r}, which procctl needs there: {_describe(exc)}"


def _task_error(exc: BaseException | None, address: str) -> str:
    missing = _missing_module(exc) if exc is not None else None
    if exc is not None and missing is not None:
        return _import_problem(missing, exc, address)
    return f"its task failed on the cluster before the job started: {_describe(exc)}"

"""`each` jobs on a Dask cluster: the executor behind the engine's seam
(`engine.child`), on procctl's side.

`DaskExecutor.connect` reaches the scheduler, checks that the workers can
run procctl's task (procctl of the same version importable there) and that
every `memory` limit fits some worker, and installs the worker plugin
(`cluster.worker`). Each run of a job is then a `RemoteChild`
(`cluster.remote`): a task submitted when the pool lets the job start — so
the pool's bound (`-j`, `max_parallel`, `auto`, `procctl pool`) is the
window of tasks in flight on the cluster — with a priority that keeps the
pool's order. The executor hears everything the run's jobs say and hands
each message to its child; a worker that leaves takes its children's runs
with it.

Dask's client runs its own event loop in a thread; what it hears is handed
to procctl's loop in batches (`_Inbox`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import secrets
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from procctl import __version__
from procctl.cluster.reasons import describe, import_problem, missing_module
from procctl.cluster.remote import RemoteChild
from procctl.cluster.wire import JobSpec
from procctl.engine import childenv
from procctl.engine.child import SpawnRequest
from procctl.errors import ClusterError
from procctl.units import format_size

if TYPE_CHECKING:
    from distributed import Client, Future

    from procctl.config.manifest import Manifest, ProcessSpec

CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 30.0
"""How long `connect` waits for a first worker to join the scheduler."""


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
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {describe(exc)}") from None
        try:
            try:
                client.wait_for_workers(1, timeout=workers_timeout_s)
            except (TimeoutError, distributed.TimeoutError):
                raise ClusterError(f"no worker joined the Dask scheduler at {address} within {workers_timeout_s:g}s") from None
            try:
                found = client.run(worker.facts)
            except Exception as exc:  # noqa: BLE001 - what the workers could not do, said in one line
                missing = missing_module(exc)
                if missing is None:
                    raise
                raise ClusterError(import_problem(missing, exc, address)) from None
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
            raise ClusterError(f"the Dask cluster at {address} refused procctl's worker plugin: {describe(exc)}") from None
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

    def settle(self) -> None:
        """Nothing is left going after its exit."""

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

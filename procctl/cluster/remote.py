"""One run of one job as a task on a Dask cluster: `RemoteChild`, the remote
`ChildProcess` that `cluster.executor` makes.

Its task is submitted when the pool lets the job start. What the job writes
comes back in batches on the run's event topic and goes to its log file
first, then to the same line splitter and callback as a local child's; its
usage feeds the same meters; its exit, its CPU time and peak RSS go into the
history. Past half a window of output it acknowledges what it received, so
that the worker reads on (and waits while a sink holds the flow).

Stopping, killing, pausing and signals reach the job's tree on its worker
through `Client.run`; a task that is cancelled is killed by the worker
plugin. A job whose worker is lost ends as failed (`Cut.LOST`), and the
restart policy decides, as for any failure: Dask's own re-run of the task
elsewhere is stopped at once, so an attempt never runs twice at once.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from procctl.cluster.reasons import describe, task_error
from procctl.cluster.wire import WINDOW_BYTES, JobSpec
from procctl.config.command import argv_of
from procctl.engine import childenv
from procctl.engine.child import Breach, Exit, SpawnRequest
from procctl.engine.lines import LineSplitter
from procctl.engine.pipes import STREAMS
from procctl.engine.proctable import TreeUsage
from procctl.engine.outcome import Cut
from procctl.errors import SpawnError

if TYPE_CHECKING:
    from distributed import Future

    from procctl.engine.tree import ProcessTree

END_GRACE_S = 5.0
"""After a task is done, how long its last message may keep us waiting."""
KILL_GRACE_S = 5.0
"""After SIGKILL was sent, how long the end of a job may take to be heard
before it counts as lost with its worker."""
MAX_REQUEUES = 3
"""How often a task that never started is submitted again after its worker
died under it (it never ran: no attempt is spent)."""


class Cluster(Protocol):
    """The cluster as a remote child sees it: what it asks of the executor
    that made it (`cluster.executor.DaskExecutor`)."""

    address: str

    def submit(self, child: RemoteChild, spec_of: Callable[[str, str], JobSpec]) -> Future: ...

    def stopping(self, request: SpawnRequest) -> tuple[int, float, float]: ...

    def forget(self, key: str) -> None: ...

    async def call(self, worker_address: str, function: Callable[..., Any], *args: Any) -> Any: ...

    def cancel(self, future: Future) -> None: ...


class RemoteChild:
    """One run of one job as a task on the cluster: the remote `ChildProcess`."""

    def __init__(self, executor: Cluster, request: SpawnRequest) -> None:
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
                request.on_output(STREAMS[fd], lines)
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
                self._request.on_output(STREAMS[fd], rest)

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
                self._give_up(SpawnError(task_error(exc, self._executor.address)))
                return
            self.lost(f"its worker {self.worker} was lost ({describe(exc)})")
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

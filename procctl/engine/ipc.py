"""What lets the processes of a run talk to their supervisor and share memory:
the notification socket (sd_notify: readiness, status text, watchdog), the
watchdog of each run, and the shared memory regions.

The runner calls in at the points of a run's life — spawn (`env`, `fds`),
start (`started`), pause, resume, stop and end — and hears back through
`Hooks`. Who a notification or a control request comes from is decided here
(`owner_of`), from the kernel's credentials of the sender, for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from procctl import events
from procctl.engine import childenv, shm
from procctl.engine.tree import owner
from procctl.engine.notify import Notification, NotifyServer
from procctl.engine.probes import NotifyProbe

if TYPE_CHECKING:
    from procctl.config.manifest import ProcessSpec

STATUS_INTERVAL_S = 0.1
"""A run's STATUS= texts are published at most this often: a process that
sends thousands a second is shown its latest, and the events stay few."""

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", contravariant=True)


class Hooks(Protocol[T_contra]):
    """What the runner hears from its processes."""

    def status_message(self, target: T_contra, text: str) -> None:
        """The process reported STATUS=text."""
        ...

    def hung(self, target: T_contra, why: str) -> None:
        """Its watchdog went unfed (or it triggered it): stop the run for that."""
        ...

    def notice(self, target: T_contra | None, message: str, level: str) -> None:
        """Something worth a line (None: about no instance)."""
        ...


class Watchdog:
    """WATCHDOG=1 must come at least every `timeout_s`, else `missed` is
    called, once. Paused while its process is paused."""

    def __init__(self, timeout_s: float, missed: Callable[[str], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.timeout_s = timeout_s
        self._missed = missed
        self._handle: asyncio.TimerHandle | None = None
        self.fired = False
        self._arm()

    def _arm(self) -> None:
        self.cancel()
        self._handle = self._loop.call_later(self.timeout_s, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.fired = True
        self._missed(f"watchdog missed: no WATCHDOG=1 within {self.timeout_s:g}s")

    def feed(self) -> None:
        if not self.fired and self._handle is not None:
            self._arm()

    def retime(self, timeout_s: float) -> None:
        """WATCHDOG_USEC=: a new timeout, counted from now."""
        self.timeout_s = timeout_s
        self.feed()

    def pause(self) -> None:
        self.cancel()

    def resume(self) -> None:
        """A resumed process gets a whole timeout to speak again."""
        if not self.fired:
            self._arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class RunChannel:
    """What one run said on its notification socket. (A plain class: a
    dataclass compiles its methods at every start.)"""

    __slots__ = ("pid", "probe", "watchdog", "status", "main_pid", "reloading", "published_at", "status_due", "warned_main_pid")

    def __init__(self, pid: int, probe: NotifyProbe, watchdog: Watchdog | None) -> None:
        self.pid = pid
        self.probe = probe
        self.watchdog = watchdog
        self.status = ""
        self.main_pid: int | None = None
        self.reloading = False
        self.published_at = float("-inf")
        """When its status was last published (loop time)."""
        self.status_due: asyncio.TimerHandle | None = None
        """A publication of its latest status, held back by STATUS_INTERVAL_S."""
        self.warned_main_pid = False


class Ipc(Generic[T]):
    """The run's notification socket, its runs' watchdogs and its shared regions."""

    def __init__(
        self,
        region_sizes: Mapping[str, int],
        hooks: Hooks[T],
        publish: Callable[[events.Event], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._sizes = dict(region_sizes)
        self._hooks = hooks
        self._publish = publish
        self._interval_s = max(interval_s, 0.05)
        self.regions = shm.Regions({})
        self._server: NotifyServer[T] = NotifyServer(self.owner_of, self._deliver, self._refused)
        self._runs: dict[T, RunChannel] = {}
        self._by_pid: dict[int, T] = {}
        self._resident: dict[str, int] = {}
        self._sampler: asyncio.Task[None] | None = None
        self.address = ""
        """NOTIFY_SOCKET for every child."""

    # ------------------------------------------------------------ life

    def open(self) -> None:
        """Create the regions (ShmError when the system refuses) and bind the
        notification socket."""
        self.regions = shm.Regions(self._sizes)
        try:
            self.address = self._server.open()
        except OSError:
            self.regions.close()
            raise
        if len(self.regions):
            self._sample_regions()
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    def add_regions(self, sizes: Mapping[str, int]) -> None:
        """Regions a reload declared: those new to the run are created (a
        region already there keeps its size: its users map it)."""
        new = {name: size for name, size in sizes.items() if name not in self._sizes}
        if not new:
            return
        self._sizes.update(new)
        self.regions.add(new)
        self._sample_regions()
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        for run in self._runs.values():
            if run.watchdog is not None:
                run.watchdog.cancel()
            if run.status_due is not None:
                run.status_due.cancel()
        self._runs.clear()
        self._by_pid.clear()
        self._server.close()
        self.regions.close()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self._sample_regions()

    def _sample_regions(self) -> None:
        for region in self.regions:
            resident = region.resident_bytes
            if self._resident.get(region.name) != resident:
                self._resident[region.name] = resident
                self._publish(events.RegionSample("shared", region.name, size_bytes=region.size, resident_bytes=resident))

    # ------------------------------------------------------------ a run

    def env(self, spec: ProcessSpec) -> dict[str, str]:
        """What a run of `spec` finds in its environment beyond the contract
        every child gets: its watchdog's timeout and its regions."""
        env = self.regions.grant(spec.shared).env if spec.shared else {}
        if spec.watchdog_s is not None:
            env[childenv.WATCHDOG_USEC] = str(int(spec.watchdog_s * 1_000_000))
        return env

    def fds(self, spec: ProcessSpec) -> tuple[int, ...]:
        """The descriptors a run of `spec` inherits: its regions."""
        return self.regions.grant(spec.shared).fds if spec.shared else ()

    def started(self, target: T, pid: int, spec: ProcessSpec) -> NotifyProbe:
        """A run of `target` began as `pid`: its notifications count from now,
        its watchdog (if any) runs from now. Returns its readiness probe."""
        self.ended(target)
        watchdog = None
        if spec.watchdog_s is not None:
            watchdog = Watchdog(spec.watchdog_s, lambda why: self._hooks.hung(target, why))
        run = RunChannel(pid, NotifyProbe(), watchdog)
        self._runs[target] = run
        self._by_pid[pid] = target
        return run.probe

    def ended(self, target: T) -> None:
        """The run's child has exited. What it sent before it exited (still
        queued in the socket) is read first, so that a last STATUS= or
        READY=1 counts; a status held back is published now."""
        if target in self._runs:
            self._server.read_pending()
        run = self._runs.pop(target, None)
        if run is not None:
            self._by_pid.pop(run.pid, None)
            if run.watchdog is not None:
                run.watchdog.cancel()
            if run.status_due is not None:
                run.status_due.cancel()
                run.status_due = None
                self._hooks.status_message(target, run.status)

    def stopping(self, target: T) -> None:
        """procctl is stopping the run: its watchdog no longer matters."""
        run = self._runs.get(target)
        if run is not None and run.watchdog is not None:
            run.watchdog.cancel()
            run.watchdog = None

    def pause(self, target: T) -> None:
        run = self._runs.get(target)
        if run is not None and run.watchdog is not None:
            run.watchdog.pause()

    def resume(self, target: T) -> None:
        run = self._runs.get(target)
        if run is not None and run.watchdog is not None:
            run.watchdog.resume()

    def describe(self, target: T) -> dict[str, Any]:
        """What the current run reported, for `status`."""
        run = self._runs.get(target)
        return {
            "status_message": run.status if run else "",
            "main_pid": run.main_pid if run else None,
            "watchdog_s": run.watchdog.timeout_s if run and run.watchdog else None,
        }

    # ------------------------------------------------------------ who

    def owner_of(self, pid: int) -> T | None:
        """The instance whose current run's tree `pid` belongs to, if any."""
        root = owner(pid, self._by_pid)
        return self._by_pid.get(root) if root is not None else None

    # ------------------------------------------------------------ notifications

    def _refused(self, pid: int, why: str) -> None:
        self._hooks.notice(None, why, "warning")

    def _publish_status(self, target: T, run: RunChannel) -> None:
        """Publish the run's latest status now, or once STATUS_INTERVAL_S
        has passed since the last one."""
        if run.status_due is not None:
            return  # Already due: it will publish the latest text.
        loop = asyncio.get_running_loop()
        wait = run.published_at + STATUS_INTERVAL_S - loop.time()
        if wait > 0:
            run.status_due = loop.call_later(wait, self._publish_status_now, target, run)
        else:
            self._publish_status_now(target, run)

    def _publish_status_now(self, target: T, run: RunChannel) -> None:
        run.status_due = None
        if self._runs.get(target) is run:
            run.published_at = asyncio.get_running_loop().time()
            self._hooks.status_message(target, run.status)

    def _deliver(self, target: T, pid: int, message: Notification) -> None:
        run = self._runs.get(target)
        if run is None:
            return
        hooks = self._hooks
        if message.main_pid is not None:
            if owner(message.main_pid, {run.pid}) == run.pid:
                if run.main_pid != message.main_pid:
                    run.main_pid = message.main_pid
                    hooks.notice(target, f"main pid is {message.main_pid} (MAINPID=)", "info")
            elif not run.warned_main_pid:
                run.warned_main_pid = True
                hooks.notice(target, f"ignored MAINPID={message.main_pid}: not a process of its tree", "warning")
        if message.extend_timeout_usec is not None and not run.probe.passed.is_set():
            run.probe.extend(message.extend_timeout_usec / 1_000_000)
        if message.reloading and not run.reloading:
            run.reloading = True
            hooks.notice(target, "reloading (RELOADING=1)", "info")
        if message.ready:
            if run.reloading:
                run.reloading = False
                hooks.notice(target, "reloaded (READY=1)", "info")
            run.probe.passed.set()
        if message.status is not None and message.status != run.status:
            run.status = message.status
            self._publish_status(target, run)
        if message.stopping:
            hooks.notice(target, "stopping of its own accord (STOPPING=1)", "info")
            self.stopping(target)
        watchdog = run.watchdog
        if watchdog is not None:
            if message.watchdog_usec is not None:
                watchdog.retime(message.watchdog_usec / 1_000_000)
            if message.watchdog == "ping":
                watchdog.feed()
            elif message.watchdog == "trigger":
                watchdog.cancel()
                watchdog.fired = True
                hooks.hung(target, "watchdog triggered by the process (WATCHDOG=trigger)")


def region_users(
    regions: shm.Regions, users: Iterable[tuple[str, ProcessSpec, int | None, list[int]]]
) -> list[dict[str, Any]]:
    """`shm ls`: each region, its figures, and the instances that list it
    (`users`: instance name, its spec, the pid of its run or None, the pids
    of its tree), with whether one of their processes maps it now."""
    users = list(users)
    inodes = {region.inode: region.name for region in regions}
    mapping = shm.mapped_by((pid for _, _, _, tree in users for pid in tree), inodes)
    listed = []
    for region in regions:
        rows = []
        for instance, spec, pid, tree in users:
            for name, mode in spec.shared:
                if name == region.name:
                    rows.append({"instance": instance, "mode": mode, "pid": pid, "mapped": bool(mapping.get(name, set()) & set(tree))})
        listed.append({"name": region.name, "size_bytes": region.size, "resident_bytes": region.resident_bytes, "users": rows})
    return listed

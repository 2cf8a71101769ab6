"""A run's own files in its state directory: the pid file (`pid_file`), the
run's event log, procctl's own events kept with the run's logs
(`event_log`), and each instance's log with its time index
(`instance_log`; the index made with the log's first piece), each log a `LogFile` that rotates as the manifest says.

The supervisor opens them; how a log is written is `logfile`'s, where it
lies `logindex`'s and `store`'s.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from procctl import events
from procctl.bus import Bus
from procctl.engine import logindex
from procctl.engine.logfile import LogFile
from procctl.engine.runlog import RunLog
from procctl.errors import SpawnError, StateDirError

if TYPE_CHECKING:
    from procctl.config.plan import Job, Plan
    from procctl.engine.runner import InstanceRunner
    from procctl.engine.store import StateDir


MAX_LOGS_KNOWN = 100_000
"""Instance logs a run keeps the names of (`MadeLogs`), at most: past
that it stops knowing, and looks for each file as it starts."""


class MadeLogs:
    """Which instance logs may be in `logs/` now. A run's logs begin empty
    (`StateDir.begin_run`) and a log's file comes with its first byte, so
    an instance's file can be there only if this run made it; a start need
    not look for one that cannot be (an open failing with ENOENT and the
    checks of the path before it: three system calls on the spawner's
    thread, each giving up the interpreter lock, for every job of a run
    whose jobs are silent). Where the run's logs did not begin empty (a
    file could not be moved), every start looks."""

    __slots__ = ("_known", "_names")

    def __init__(self) -> None:
        self._known = False
        self._names: set[str] = set()

    def began_empty(self) -> None:
        self._known = True
        self._names.clear()

    def made(self, log_name: str) -> None:
        if self._known:
            self._names.add(log_name)
            if len(self._names) > MAX_LOGS_KNOWN:
                self._known = False
                self._names.clear()

    def may_exist(self, log_name: str) -> bool:
        return not self._known or log_name in self._names


@contextlib.contextmanager
def pid_file(state_dir: StateDir) -> Iterator[None]:
    # Through the checked state directory: never written through a link.
    state_dir.write_pid(os.getpid())
    try:
        yield
    finally:
        state_dir.remove_pid()


@contextlib.contextmanager
def event_log(
    state_dir: StateDir, bus: Bus, plan: Plan, run_id: str, position: Callable[[str], int | None], made: MadeLogs
) -> Iterator[None]:
    """This run's logs begin (the last run's move to `logs/past/`: `made`
    learns that they begin empty), and procctl's own events are kept with
    them for the whole run."""
    settings = plan.manifest.settings
    try:
        state_dir.begin_run(run_id, {"pid": os.getpid(), "started": time.time(), "manifest": str(plan.manifest.path)})
        made.began_empty()
        fd = state_dir.open_log(logindex.EVENTS, truncate=True)
    except OSError as exc:
        # A full or failing disk: the run goes on, its instances' logs
        # say so each for itself (`logfile`), without the event log.
        message = f"the run's event log is off ({exc.strerror or exc}): procctl logs will show the output without procctl's events"
        bus.publish(events.Notice("procctl", "procctl", message=message, level="warning"))
        yield
        return
    log = LogFile(fd, rotate=lambda: state_dir.rotate_log(logindex.EVENTS, settings.log_keep), max_bytes=settings.log_max_size)
    run_log = RunLog(log, position)
    bus.subscribe(run_log)
    try:
        yield
    finally:
        bus.unsubscribe(run_log)
        run_log.close()
        try:
            state_dir.prune_past_runs()
        except (OSError, StateDirError):
            pass  # (what is left is deleted when a later run ends)


def instance_log(state_dir: StateDir, bus: Bus, runner: InstanceRunner, job: Job, *, truncate: bool, made: MadeLogs) -> LogFile:
    """The writer of `job`'s log, rotating as its process says now
    (`runner.job`: a reload may change it). Its file is made with its first
    byte (one already there is opened with the spawn, on the spawner's
    thread: `LogFile.open_file`; one `made` says cannot be there is not
    looked for); its time index with its first mark."""
    log_name = job.log_name

    def open_log(create: bool) -> int:
        if not create and not made.may_exist(log_name):
            return -1  # (made with the first byte)
        try:
            fd = state_dir.open_log(log_name, truncate=truncate, create=create)
            if create:
                made.made(log_name)
            return fd
        except FileNotFoundError:
            if create:
                raise
            return -1  # (made with the first byte)
        except (OSError, StateDirError) as exc:
            why = str(exc) if isinstance(exc, StateDirError) else f"{runner.log_path}: {exc.strerror or exc}"
            if create:
                raise OSError(why) from None  # The log refuses the output; it is still shown.
            # One line, and this start fails; the supervisor goes on.
            raise SpawnError(f"cannot write its log: {why}") from None

    def open_index(truncate: bool) -> int:
        try:
            return state_dir.open_log_index(job.log_name, truncate=truncate)
        except (OSError, StateDirError):
            return -1  # A log without marks still has every byte.

    def rotate() -> int:
        return state_dir.rotate_log(job.log_name, runner.job.spec.log_keep)

    def rotate_failed(exc: OSError) -> None:
        message = f"its log {runner.log_path} could not rotate ({exc.strerror or exc}): it grows on, whole, until the run ends"
        bus.publish(events.Notice(runner.process, runner.name, message=message, level="warning"))

    return LogFile(
        opener=open_log, open_index=open_index, truncate_index=truncate, rotate=rotate, max_bytes=job.spec.log_max_size, on_rotate_error=rotate_failed,
        opens_empty=truncate,
    )  # fmt: skip

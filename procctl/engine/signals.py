"""SIGINT, SIGTERM and SIGHUP for the supervisor: the handler only records;
the loop acts.

First SIGINT or SIGTERM: graceful stop. A second: force (SIGKILL
everything). SIGHUP means what `hangup_action` says. The previous handlers
come back when the capture ends. (The run then exits with
`errors.INTERRUPTED_EXIT`.)

What procctl was started with ignoring (`nohup`, `cmd &` in a script, a
parent's `trap '' QUIT`) stays ignored by procctl but not by its children,
as systemd starts services: an ignored disposition survives exec, a handled
one does not, so each is handled, and a child's `stop_signal` or `procctl
signal` reaches it. An ignored SIGCHLD is put back to its default: the
kernel would reap the children itself and their exit codes would be lost.
A blocked signal is unblocked for the capture: a supervisor started with
SIGTERM blocked (a parent's mask survives its exec) would never stop on it.
"""

from __future__ import annotations

import asyncio
import enum
import signal
from collections.abc import Callable


class Hangup(enum.Enum):
    """What SIGHUP asks of a supervisor."""

    STOP = "stop"
    """A graceful stop, as SIGTERM."""
    RELOAD = "reload"
    """Apply the edited manifest (as daemons take SIGHUP)."""


def hangup_action(detached: bool) -> Hangup:
    """The one place that decides what SIGHUP does.

    In the foreground it means the terminal closed: a graceful stop, as
    SIGTERM (never the instant death of the default action, whose guardian
    would SIGKILL every child). A detached supervisor (`up -d`) has no
    terminal, and SIGHUP is how daemons are told to reload (nginx,
    supervisord): it applies the edited manifest, as `procctl reload`."""
    return Hangup.RELOAD if detached else Hangup.STOP


_LEFT_AS_THEY_ARE = frozenset({
    signal.SIGKILL, signal.SIGSTOP,
    # A fault's: a handler that returns would run the faulting instruction again.
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP, signal.SIGSYS,
    # Python ignores these itself, and the spawn restores them in the child.
    signal.SIGPIPE, signal.SIGXFSZ,
    # Job control: a handled SIGTTOU would fail a background write to the
    # terminal with EINTR again and again, where an ignored one lets it through.
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP,
    signal.SIGCHLD,
})  # fmt: skip


def _still_ignored(signum: int, frame: object) -> None:
    """What an inherited SIG_IGN becomes in the supervisor: nothing happens,
    and a child's exec resets it to the default."""


def _unignore() -> list[int]:
    """Each ignored signal handled by `_still_ignored` instead (SIGCHLD put
    back to its default); the signals that were ignored, to restore."""
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        # Not restored when the capture ends: procctl reaps its children.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    replaced = []
    for sig in signal.Signals:
        if sig not in _LEFT_AS_THEY_ARE and signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _still_ignored)
            replaced.append(int(sig))
    return replaced


class SignalCapture:
    def __init__(
        self,
        on_graceful: Callable[[int], None],
        on_force: Callable[[int], None],
        *,
        on_reload: Callable[[], None] | None = None,
        detached: bool = False,
    ) -> None:
        self._on_graceful = on_graceful
        self._on_force = on_force
        self._on_reload = on_reload
        self._hangup = hangup_action(detached)
        if self._hangup is Hangup.RELOAD and on_reload is None:
            self._hangup = Hangup.STOP
        self.received: list[int] = []
        """The signals that asked for a stop, in order."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unignored: list[int] = []
        self._blocked: set[signal.Signals] = set()

    def _handle(self, signum: int) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            self._on_graceful(signum)
        else:
            self._on_force(signum)

    def _handle_hangup(self) -> None:
        if self._hangup is Hangup.RELOAD:
            assert self._on_reload is not None
            self._on_reload()
        elif not self.received:
            # A hangup only ever starts a stop, never forces one: it may
            # come again for the same closed terminal.
            self._handle(int(signal.SIGHUP))

    def __enter__(self) -> SignalCapture:
        self._loop = asyncio.get_running_loop()
        self._unignored = _unignore()
        self._blocked = signal.pthread_sigmask(signal.SIG_SETMASK, ())
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._handle, int(sig))
        self._loop.add_signal_handler(signal.SIGHUP, self._handle_hangup)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)
        for signum in self._unignored:
            signal.signal(signum, signal.SIG_IGN)
        if self._blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._blocked)

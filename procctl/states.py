"""The states of an instance and which may follow which. Pure vocabulary,
shared by the engine (the only writer of a state), the events that carry it
and the UI that shows it.

The table `FOLLOWS` is the whole state machine: the engine's one writer
(`InstanceRunner.transition`) refuses any change it does not list, so a
control verb can never move an instance somewhere its life cannot go (a
`resume` cannot make a stopping instance running again).
"""

from __future__ import annotations

import enum
import signal


class State(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its dependencies or a pool slot."""
    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    """Running, and its readiness probe passed."""
    STOPPING = "stopping"
    """A stop is in flight: the stop signal was sent, SIGKILL may follow."""
    PAUSED = "paused"
    BACKOFF = "backoff"
    """Ended; the restart policy starts it again after a delay."""
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    SKIPPED = "skipped"
    STOPPED = "stopped"
    """Ended because procctl was asked to stop it (Ctrl-C, fail_fast, kill)."""

    @property
    def text(self) -> str:
        """The state as people read it (`timed out`); the value is the
        token JSON, events and the history carry (`timed_out`)."""
        return self.value.replace("_", " ")

    @property
    def final(self) -> bool:
        return self in _FINAL

    @property
    def failure(self) -> bool:
        return self in _FAILURES


_FINAL = frozenset({State.EXITED, State.FAILED, State.KILLED, State.TIMED_OUT, State.LIMIT_EXCEEDED, State.SKIPPED, State.STOPPED})
_FAILURES = frozenset({State.FAILED, State.KILLED, State.TIMED_OUT, State.LIMIT_EXCEEDED})

_ENDED_ON_ITS_OWN = frozenset({State.EXITED, State.FAILED, State.KILLED, State.LIMIT_EXCEEDED})
"""How a run that nobody stopped ends (LIMIT_EXCEEDED: the kernel ended it)."""

FOLLOWS: dict[State, frozenset[State]] = {
    # PENDING -> STARTING: dependencies hold and the pool gave a slot.
    # PENDING -> SKIPPED: a dependency will never hold, or a stop came first.
    # PENDING -> STOPPED: the same, for an instance that had run before (`start`).
    State.PENDING: frozenset({State.STARTING, State.SKIPPED, State.STOPPED}),
    # STARTING -> RUNNING: spawned. STARTING -> FAILED | BACKOFF: it could not be spawned.
    # STARTING -> SKIPPED | STOPPED: a stop came while it waited for its spawn (as from PENDING),
    # or while its start was still to come (a job queued on a cluster).
    State.STARTING: frozenset({State.RUNNING, State.FAILED, State.BACKOFF, State.SKIPPED, State.STOPPED}),
    # RUNNING -> READY: its probe passed. -> PAUSED, STOPPING: on request (or
    # its timeout, a limit, a failed probe). -> BACKOFF: it ended and will restart.
    State.RUNNING: frozenset({State.READY, State.PAUSED, State.STOPPING, State.BACKOFF} | _ENDED_ON_ITS_OWN),
    State.READY: frozenset({State.PAUSED, State.STOPPING, State.BACKOFF} | _ENDED_ON_ITS_OWN),
    # PAUSED -> RUNNING | READY: resumed. It may also be stopped while
    # paused, or die of something from outside.
    State.PAUSED: frozenset({State.RUNNING, State.READY, State.STOPPING, State.BACKOFF} | _ENDED_ON_ITS_OWN),
    # STOPPING ends as its stop says (stopped on request, timed out, over a
    # limit, failed its probe), or starts again: at once for `restart`,
    # after a backoff when the restart policy wants it, behind its
    # dependencies (PENDING) when a reload changed it.
    State.STOPPING: frozenset({State.STOPPED, State.TIMED_OUT, State.LIMIT_EXCEEDED, State.FAILED, State.STARTING, State.BACKOFF, State.PENDING}),
    # BACKOFF -> STARTING: the delay ran out (or `restart` cut it short). -> STOPPED: a stop came first.
    # -> PENDING: a reload changed it, and it waits for its dependencies again.
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED, State.PENDING}),
    # An ended instance goes back to PENDING on `start` or `restart`.
    **{final: frozenset({State.PENDING}) for final in _FINAL},
}
"""Which states may follow each state; anything else is refused."""


class IllegalTransition(RuntimeError):
    """A change of state the table does not allow: a bug in the engine, never
    something a user can cause (control verbs ask `may_follow` first)."""

    def __init__(self, instance: str, old: State, new: State) -> None:
        super().__init__(f"{instance}: {old} may not become {new}")


def may_follow(old: State, new: State) -> bool:
    return new in FOLLOWS[old]


def signal_name(signum: int | None) -> str:
    if signum is None:
        return ""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def status_text(state: State, exit_code: int | None, signum: int | None) -> str:
    """The state with how it ended: `exited 0`, `failed 3`, `killed SIGTERM`."""
    if state is State.EXITED:
        return f"exited {exit_code}" if exit_code is not None else "exited"
    if state is State.FAILED:
        return f"failed {exit_code}" if exit_code is not None else "failed"
    if state is State.KILLED:
        return f"killed {signal_name(signum)}"
    return state.text


class Ended:
    """What a thing with a state and an exit status says of how it ended
    (an instance's result, a row of the live view)."""

    __slots__ = ()
    state: State
    exit_code: int | None
    signal: int | None

    @property
    def status_text(self) -> str:
        return status_text(self.state, self.exit_code, self.signal)

    @property
    def exit_text(self) -> str:
        return exit_text(self.exit_code, self.signal)


def exit_text(exit_code: int | None, signum: int | None) -> str:
    """The exit status as a shell reports it: the code, or 128+N for signal N."""
    if exit_code is not None:
        return str(exit_code)
    if signum is not None:
        return str(128 + signum)
    return "-"

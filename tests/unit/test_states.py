"""The state machine's table and the one verdict on how a run ended."""

from __future__ import annotations

import signal

import pytest

from procctl.engine.outcome import Cut, judge
from procctl.states import FOLLOWS, IllegalTransition, State, may_follow


def test_every_state_has_its_row_and_only_lists_states() -> None:
    assert set(FOLLOWS) == set(State)
    for old, new in FOLLOWS.items():
        assert new <= set(State) and old not in new, old


def test_what_is_under_way_cannot_be_undone() -> None:
    # A stop in flight never becomes running, ready or paused again (once
    # it has ended, a reload may queue the instance behind its dependencies).
    for state in (State.RUNNING, State.READY, State.PAUSED):
        assert not may_follow(State.STOPPING, state)
    # Only resuming leaves PAUSED for a running state; an ended instance
    # only goes back to the queue.
    assert may_follow(State.PAUSED, State.RUNNING) and may_follow(State.PAUSED, State.READY)
    for final in (s for s in State if s.final):
        assert FOLLOWS[final] == {State.PENDING}
    # A run that nobody stopped never ends as stopped or timed out.
    for state in (State.RUNNING, State.READY, State.PAUSED):
        assert not may_follow(state, State.STOPPED) and not may_follow(state, State.TIMED_OUT)


def test_an_illegal_transition_names_the_instance_and_both_states() -> None:
    with pytest.raises(IllegalTransition, match="web.2: stopping may not become running"):
        raise IllegalTransition("web.2", State.STOPPING, State.RUNNING)


@pytest.mark.parametrize(
    ("returncode", "cut", "expected"),
    [
        (0, None, State.EXITED),
        (3, None, State.FAILED),
        (-signal.SIGTERM, None, State.KILLED),
        (-signal.SIGXCPU, None, State.LIMIT_EXCEEDED),
        (-signal.SIGXFSZ, None, State.LIMIT_EXCEEDED),
        (-signal.SIGTERM, Cut.REQUEST, State.STOPPED),
        (1, Cut.RESTART, State.STOPPED),
        (0, Cut.REQUEST, State.STOPPED),
        (-signal.SIGKILL, Cut.TIMEOUT, State.TIMED_OUT),
        (-signal.SIGTERM, Cut.LIMIT, State.LIMIT_EXCEEDED),
        (0, Cut.PROBE, State.FAILED),
        (-signal.SIGXCPU, Cut.REQUEST, State.STOPPED),
    ],
)
def test_judge(returncode: int, cut: Cut | None, expected: State) -> None:
    assert judge(returncode, cut, "why", cpu_time_limited=False).state is expected


def test_a_sigkill_at_the_hard_cpu_limit_is_the_kernel_enforcing_it() -> None:
    ending = judge(-signal.SIGKILL, None, "", cpu_time_limited=True)
    assert (ending.state, ending.kernel_limit, ending.reason) == (State.LIMIT_EXCEEDED, "cpu_time", "cpu_time limit reached (SIGKILL)")
    # Unless procctl itself was stopping it, or it has no cpu_time limit.
    assert judge(-signal.SIGKILL, Cut.REQUEST, "stopped", cpu_time_limited=True).state is State.STOPPED
    assert judge(-signal.SIGKILL, None, "", cpu_time_limited=False).state is State.KILLED

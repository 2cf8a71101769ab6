"""An exec probe ends with its whole tree: one past its timeout, one cut short
by the end of the run it probes, one that left something behind when it
exited. What its shell started must not live on, orphaned, for the rest of
the supervisor's life (the run's cgroup would find it only at the end)."""

from __future__ import annotations

import json
import os
import signal

import pytest
from conftest import Project, alive, wait_until

GONE_WITHIN_S = 30.0
"""Generous: other suites share the machine. Without the fix they never go."""

LEFTOVER = "sh -c 'sleep {seconds} & echo $! >> probe.pids; wait'"
"""A probe whose shell has a child of its own (a grandchild of procctl's),
its pid appended to probe.pids at each attempt."""


def _pids(project: Project) -> list[int]:
    path = project.root / "probe.pids"
    text = path.read_text() if path.exists() else ""
    return [int(line) for line in text.splitlines() if line.strip().isdigit()]


def _supervisor(project: Project) -> int:
    up = project.run("up", "-d")
    assert up.returncode == 0, up
    return int(json.loads(project.run("status", "--json").stdout)["pid"])


def _clean_up(project: Project) -> None:
    project.run("down")
    for pid in _pids(project):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _state(project: Project, name: str) -> str:
    status = project.status()
    rows = status["instances"] if status else []  # type: ignore[index]
    return next((row["state"] for row in rows if row["name"] == name), "")  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    "probe",
    [
        f'ready = {{ exec = "{LEFTOVER.format(seconds=777)}", timeout = "1s" }}\nrestart = "on-failure"\nbackoff = "100ms"',
        f'liveness = {{ exec = "{LEFTOVER.format(seconds=778)}", interval = "200ms", timeout = "500ms", failures = 100 }}',
    ],
    ids=["readiness", "liveness"],
)
def test_an_exec_probe_past_its_timeout_ends_with_its_tree(project: Project, probe: str) -> None:
    """1. `up -d`: a service whose exec probe (readiness or liveness) starts
       a `sleep` from its shell and waits for it, past the probe's timeout.
    2. The first attempt's sleep (the probe's grandchild) is gone soon
       after the timeout, while the supervisor runs on.
    3. The timeout counts as a failure, and probing goes on: a readiness
       probe's run is stopped and started again, a liveness probe tries
       again; each new attempt's sleep ends the same way."""
    project.write(f"""
        [settings]
        fail_fast = false
        [process.a]
        cmd = "exec sleep 1000"
        {probe}
    """)
    try:
        supervisor = _supervisor(project)
        first = wait_until(lambda: _pids(project), timeout=GONE_WITHIN_S, what="the probe to start its sleep")[0]  # type: ignore[index]
        wait_until(lambda: not alive(first), timeout=GONE_WITHIN_S, what=f"the timed-out probe's sleep (pid {first}) to end")
        second = wait_until(lambda: _pids(project)[1:], timeout=GONE_WITHIN_S, what="another attempt of the probe")[0]  # type: ignore[index]
        wait_until(lambda: not alive(second), timeout=GONE_WITHIN_S, what=f"the next probe's sleep (pid {second}) to end")
        assert alive(supervisor)
    finally:
        _clean_up(project)


def test_an_exec_probe_in_flight_ends_with_its_tree_when_the_service_stops(project: Project) -> None:
    """1. `up -d`: a liveness probe with a long timeout is under way (its
       sleep runs).
    2. `kill a` stops the service: the probe is cut short, and its sleep
       is gone soon after, while the supervisor runs on."""
    project.write(f"""
        [settings]
        fail_fast = false
        [process.a]
        cmd = "exec sleep 1000"
        liveness = {{ exec = "{LEFTOVER.format(seconds=779)}", interval = "100ms", timeout = "300s" }}
        [process.b]
        cmd = "exec sleep 1000"
    """)
    try:
        supervisor = _supervisor(project)
        first = wait_until(lambda: _pids(project), timeout=GONE_WITHIN_S, what="the probe to start its sleep")[0]  # type: ignore[index]
        assert project.run("kill", "a").returncode == 0
        wait_until(lambda: not alive(first), timeout=GONE_WITHIN_S, what=f"the cut probe's sleep (pid {first}) to end")
        assert alive(supervisor) and _state(project, "b") == "running"
    finally:
        _clean_up(project)


def test_what_an_exec_probe_leaves_in_its_group_ends_with_it(project: Project) -> None:
    """1. `up -d`: a liveness probe starts a sleep in the background and
       exits 0 at once (it passes).
    2. The sleep it left in its process group is gone soon after, as what a
       service's shell leaves behind is."""
    project.write("""
        [settings]
        fail_fast = false
        [process.a]
        cmd = "exec sleep 1000"
        liveness = { exec = "sleep 780 & echo $! >> probe.pids", interval = "1s", timeout = "300s" }
    """)
    try:
        supervisor = _supervisor(project)
        first = wait_until(lambda: _pids(project), timeout=GONE_WITHIN_S, what="the probe to start its sleep")[0]  # type: ignore[index]
        wait_until(lambda: not alive(first), timeout=GONE_WITHIN_S, what=f"the probe's leftover sleep (pid {first}) to end")
        assert alive(supervisor) and _state(project, "a") == "running"
    finally:
        _clean_up(project)


def test_an_exec_probe_in_flight_at_shutdown_is_not_left_for_the_last_sweep(project: Project) -> None:
    """1. `up -d`: a liveness probe with a long timeout is under way.
    2. `down`: the probe is cut short with its run, and its tree with it,
       so the run's last sweep finds nothing left (it would say what it
       killed); the probe's sleep is gone."""
    project.write(f"""
        [process.a]
        cmd = "exec sleep 1000"
        liveness = {{ exec = "{LEFTOVER.format(seconds=781)}", interval = "100ms", timeout = "300s" }}
    """)
    try:
        _supervisor(project)
        first = wait_until(lambda: _pids(project), timeout=GONE_WITHIN_S, what="the probe to start its sleep")[0]  # type: ignore[index]
        down = project.run("down")
        assert down.returncode == 0, down
        assert not alive(first)
        log = (project.root / ".procctl" / "supervisor.log").read_text()
        assert "still running after every instance ended" not in log, log
    finally:
        _clean_up(project)

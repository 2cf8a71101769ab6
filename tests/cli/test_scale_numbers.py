"""Which replica numbers `scale` hands out: the lowest not running, as
docker compose does, so replica 1 keeps the manifest's port, a number comes
back under its own name with its log, and no way of reaching a count gives
a PORT past 65535."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import PY, Project, alive, wait_until


@pytest.fixture
def detached(project: Project) -> Iterator[Project]:
    """`project` for an `up -d` supervisor (it stays up with nothing running),
    brought down at the end."""
    try:
        yield project
    finally:
        project.run("down")


def _up(project: Project) -> None:
    up = project.run("up", "-d", "--wait")
    assert up.returncode == 0, up.stderr


def _instances(project: Project) -> dict[str, dict[str, Any]]:
    result = project.run("status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)["instances"]}


def _states(project: Project) -> dict[str, str]:
    return {name: row["state"] for name, row in _instances(project).items()}


def _scale(project: Project, count: int, process: str = "web") -> None:
    result = project.run("scale", f"{process}={count}")
    assert result.returncode == 0, result.stderr


def _ports(project: Project, instance: str) -> list[str]:
    return [line for line in project.log(instance).splitlines() if line.startswith("PORT=")]


def test_scale_to_zero_and_back_keeps_the_name_the_port_and_the_log(detached: Project) -> None:
    """1. A lone `web` whose port is two below the last (65533).
    2. `scale web=0` then `scale web=1`, three times: each time the one
       instance is `web` again, in a new process, with PORT=65533 (no
       `web.2`, no PORT that climbs past 65535).
    3. Its log has every run's line: appended to, not made afresh.
    4. `web.1` names it (it is replica 1): `restart web.1` restarts it."""
    project = detached
    project.write('[process.web]\ncmd = "echo PORT=$PORT; exec sleep 600"\nport = 65533\n')
    _up(project)
    pids = {_instances(project)["web"]["pid"]}
    for _ in range(3):
        _scale(project, 0)
        wait_until(lambda: _states(project) == {"web": "stopped"}, what="web to stop")
        _scale(project, 1)
        row = wait_until(lambda: (r := _instances(project))["web"]["state"] == "running" and r["web"]["pid"] not in pids and r, what="web to run again")
        assert isinstance(row, dict) and set(row) == {"web"}, row
        pids.add(row["web"]["pid"])
    wait_until(lambda: len(_ports(project, "web")) == 4, what="the fourth run's line")
    assert _ports(project, "web") == ["PORT=65533"] * 4
    assert sorted(path.name for path in project.logs.glob("web*.log")) == ["web.log"]
    restarted = project.run("restart", "web.1")
    assert restarted.returncode == 0 and "web" in restarted.stdout, restarted
    wait_until(lambda: len(_ports(project, "web")) == 5, what="the restart's line")


def test_scale_down_to_one_then_up_to_three_gives_one_to_three_again(detached: Project) -> None:
    """1. `replicas = 3` from port 7300: web.1, web.2, web.3.
    2. `scale web=1`: web.2 and web.3 stop. `scale web=3`: they run again
       under their own names and ports — no web.4 or web.5.
    3. A replica that was killed (not scaled down) is the one a scale up
       brings back: its number is free."""
    project = detached
    project.write('[process.web]\ncmd = "echo PORT=$PORT; exec sleep 600"\nport = 7300\nreplicas = 3\n')
    _up(project)
    _scale(project, 1)
    wait_until(lambda: _states(project) == {"web.1": "running", "web.2": "stopped", "web.3": "stopped"}, what="web.2 and web.3 to stop")
    _scale(project, 3)
    every = {"web.1": "running", "web.2": "running", "web.3": "running"}
    wait_until(lambda: _states(project) == every, what="three replicas, numbered 1 to 3")
    wait_until(lambda: len(_ports(project, "web.3")) == 2, what="web.3's second run")
    assert _ports(project, "web.2") == ["PORT=7301"] * 2 and _ports(project, "web.3") == ["PORT=7302"] * 2
    assert project.run("kill", "web.2").returncode == 0
    wait_until(lambda: _states(project)["web.2"] == "stopped", what="web.2 to stop")
    _scale(project, 3)
    wait_until(lambda: _states(project) == every, what="web.2 to run again")
    assert _ports(project, "web.2") == ["PORT=7301"] * 3


def test_a_count_past_the_last_port_is_refused_whatever_asks_for_it(detached: Project) -> None:
    """1. Port 65534: two replicas at most. `scale web=3` is refused.
    2. Up to two, down to none and up to two again, by way of a killed
       replica: every number handed out is 1 or 2, every PORT within 65535.
    3. A reload that moves the port to 65535 while `scale` holds two
       replicas would give web.2 PORT=65536: refused, and nothing changes."""
    project = detached
    project.write('[process.web]\ncmd = "echo PORT=$PORT; exec sleep 600"\nport = 65534\n')
    _up(project)
    refused = project.run("scale", "web=3")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "procctl: scale: web.3 would get PORT=65536, past 65535 (its port is 65534: at most 2 replicas)"
    ), refused
    _scale(project, 2)
    wait_until(lambda: _states(project) == {"web": "running", "web.2": "running"}, what="two replicas")
    _scale(project, 0)
    wait_until(lambda: _states(project) == {"web": "stopped", "web.2": "stopped"}, what="none")
    _scale(project, 1)
    _scale(project, 2)
    wait_until(lambda: _states(project) == {"web": "running", "web.2": "running"}, what="the same two again")
    wait_until(lambda: len(_ports(project, "web.2")) == 2, what="web.2's second run")
    assert _ports(project, "web") == ["PORT=65534"] * 2 and _ports(project, "web.2") == ["PORT=65535"] * 2
    web2 = _instances(project)["web.2"]["pid"]
    project.write('[process.web]\ncmd = "echo PORT=$PORT; exec sleep 600"\nport = 65535\n')
    reload = project.run("reload")
    assert reload.returncode == 2 and reload.stderr.strip() == (
        "procctl: reload: web.2 would get PORT=65536, past 65535 (its port is 65535: at most 1 replica)"
    ), reload
    assert _instances(project)["web.2"]["pid"] == web2 and _ports(project, "web.2") == ["PORT=65535"] * 2


def test_scale_back_up_while_the_last_one_stops_runs_it_again_after_its_stop(detached: Project) -> None:
    """1. A lone `web` that, on SIGTERM, waits for a file before it exits.
    2. `scale web=0`, then `scale web=1` while it is still stopping: it is
       not counted as running, and it is not joined by a second instance
       (its port is still held); it stays `stopping`.
    3. The file appears: it ends, then runs again as `web` on the same PORT."""
    project = detached
    release = project.root / "release"
    code = (
        "import os, signal, sys, time\\n"
        "def term(*_):\\n"
        f"    while not os.path.exists({str(release)!r}): time.sleep(0.02)\\n"
        "    sys.exit(0)\\n"
        "signal.signal(signal.SIGTERM, term)\\n"
        "print('PORT=' + os.environ['PORT'], flush=True)\\n"
        "time.sleep(600)"
    )
    project.write(f'[process.web]\ncmd = ["{PY}", "-c", "{code}"]\nport = 7400\nstop_timeout = "120s"\n')
    _up(project)
    first = _instances(project)["web"]["pid"]
    _scale(project, 0)
    wait_until(lambda: _states(project) == {"web": "stopping"}, what="web to be stopping")
    _scale(project, 1)
    assert _states(project) == {"web": "stopping"}
    release.write_text("")
    row = wait_until(lambda: (r := _instances(project)["web"])["state"] == "running" and r["pid"] != first and r, what="web to run again")
    assert isinstance(row, dict) and not alive(first)
    wait_until(lambda: len(_ports(project, "web")) == 2, what="the second run's line")
    assert _ports(project, "web") == ["PORT=7400"] * 2
    assert set(_states(project)) == {"web"}

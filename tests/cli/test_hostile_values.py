"""Values a manifest can hold but no child could run with: each is one line
naming file:line:key, exit 2, from `check` and from `run` alike, before any
child exists, never a traceback. What the loader accepts, the engine runs."""

from __future__ import annotations

import asyncio
import os
import resource
from pathlib import Path

import pytest

from conftest import Project
from procctl import events
from procctl.bus import Bus
from procctl.config import rlimits
from procctl.config.loader import load_manifest
from procctl.config.manifest import Limits
from procctl.config.plan import build_plan
from procctl.engine import limits
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor
from procctl.errors import SpawnError
from procctl.states import State

LONG = "a" * 300


def _nofile_over() -> int:
    top = rlimits.ceiling("nofile")
    assert top is not None
    return top + 1


CASES = {
    "env value with NUL": ('[process.a]\ncmd = "true"\nenv = { X = "a\\u0000b" }\n', "procfile.toml:3: process.a.env.X: a value cannot hold a NUL byte"),
    "top env value with NUL": ('[env]\nX = "a\\u0000b"\n[process.a]\ncmd = "true"\n', "procfile.toml:2: env.X: a value cannot hold a NUL byte"),
    "list argument with NUL": ('[process.a]\ncmd = ["echo", "a\\u0000b"]\n', "procfile.toml:2: process.a.cmd: a value cannot hold a NUL byte"),
    "string command with NUL": ('[process.a]\ncmd = "echo a\\u0000b"\n', "procfile.toml:2: process.a.cmd: a value cannot hold a NUL byte"),
    "each item with NUL": ('[process.a]\ncmd = "echo {item}"\neach = ["x", "y\\u0000"]\n', "procfile.toml:3: process.a.each: a value cannot hold a NUL byte"),
    "env key with =": ('[process.a]\ncmd = "true"\nenv = { "X=Y" = "1" }\n', "procfile.toml:3: process.a.env.\"X=Y\": an environment variable's name cannot be empty or contain '='"),
    "empty env key": ('[env]\n"" = "1"\n[process.a]\ncmd = "true"\n', "env.\"\": an environment variable's name cannot be empty"),
    "300-character name": (f'[process.{LONG}]\ncmd = "true"\n', "a process name is at most 128 characters, this one has 300"),
    "timeout = nan": ('[process.a]\ncmd = "true"\ntimeout = nan\n', "procfile.toml:3: process.a.timeout: expected a finite duration"),
    "timeout = inf": ('[process.a]\ncmd = "true"\ntimeout = inf\n', "procfile.toml:3: process.a.timeout: expected a finite duration"),
    "stop_timeout = inf": ('[settings]\nstop_timeout = inf\n[process.a]\ncmd = "true"\n', "procfile.toml:2: settings.stop_timeout: expected a finite duration"),
    "a duration too long for a float": ('[process.a]\ncmd = "true"\ntimeout = "' + "9" * 400 + 'h"\n', "process.a.timeout: expected a duration like '10s', got one too long to count"),
    "memory = 0": ('[process.a]\ncmd = "true"\nlimits = { memory = "0" }\n', "procfile.toml:3: process.a.limits.memory: must be 1 to"),
    "settings memory = 0": ('[settings]\nlimits = { memory = 0 }\n[process.a]\ncmd = "true"\n', "procfile.toml:2: settings.limits.memory: must be 1 to"),
    "nofile over the ceiling": (f'[process.a]\ncmd = "true"\nlimits = {{ nofile = {_nofile_over()} }}\n', "procfile.toml:3: process.a.limits.nofile: nofile"),
    "a range one past its bound": ('[process.a]\ncmd = "true {item}"\neach = { range = [1, 1000002] }\n', "procfile.toml:3: process.a.each.range: the range [1, 1000002] has 1,000,002 items: a range may have up to 1,000,001"),
    "port past 65535": ('[process.a]\ncmd = "true"\nport = 65535\nreplicas = 3\n', "procfile.toml:3: process.a.port: the last of 3 replicas would get PORT=65537, past 65535"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("verb", ["check", "run"])
def test_a_value_no_child_could_run_with_is_one_line(project: Project, case: str, verb: str) -> None:
    """1. The manifest holds the value. 2. `check` and `run --plain` each fail
    with exit 2 and one line naming file:line:key. 3. No child ran (no log)."""
    text, expected = CASES[case]
    project.write(text)
    args = ("run", "--plain") if verb == "run" else ("check",)
    done = project.run(*args)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("procctl: "), done.stderr
    assert expected in lines[0]
    assert not project.logs.exists() or not list(project.logs.iterdir())


def test_nofile_names_its_ceiling(project: Project) -> None:
    over = _nofile_over()
    project.write(f'[process.a]\ncmd = "true"\nlimits = {{ nofile = [64, {over}] }}\n')
    done = project.run("check")
    assert done.returncode == 2
    assert f"nofile {over:,} is over {over - 1:,}" in done.stderr


def test_a_procfile_with_a_nul_byte_or_a_port_past_65535(project: Project) -> None:
    (project.root / "Procfile").write_bytes(b"web: echo a\0b\n")
    done = project.run("check", "-f", "Procfile")
    assert done.returncode == 2 and done.stderr.strip() == "procctl: Procfile:1: a NUL byte in the file"
    (project.root / "Procfile").write_text("web: true\nworker: true\n")
    (project.root / ".env").write_text("PORT=65500\n")
    done = project.run("check", "-f", "Procfile")
    assert done.returncode == 2
    assert done.stderr.strip() == "procctl: .env: PORT 65500 gives worker port 65600, outside 1 to 65535"
    (project.root / ".env").write_bytes(b"A=x\0y\n")
    done = project.run("check", "-f", "Procfile")
    assert done.returncode == 2 and ".env:1: a NUL byte in the line" in done.stderr


@pytest.mark.parametrize(
    ("each", "warning"),
    [
        ('{ glob = "nothing-*.jpg" }', "procfile.toml:3: process.thumb.each.glob: the glob 'nothing-*.jpg' matches no file: 0 jobs"),
        ("{ range = [5, 1] }", "procfile.toml:3: process.thumb.each.range: the range [5, 1] is empty (its first is past its last): 0 jobs"),
        ("[]", "procfile.toml:3: process.thumb.each: the list is empty: 0 jobs"),
    ],
)
def test_an_each_that_makes_no_job_is_warned(project: Project, each: str, warning: str) -> None:
    """1. An `each` that yields nothing is allowed. 2. `check` and `run` warn,
    naming file:line:key and "0 jobs". 3. The run says there was nothing to run."""
    project.write(f'[process.thumb]\ncmd = "echo {{item}}"\neach = {each}\n')
    check = project.run("check")
    assert check.returncode == 0
    assert check.stderr.strip() == f"procctl: warning: {warning}"
    assert "0 instances" in check.stdout
    run = project.run("run", "--plain")
    assert run.returncode == 0
    assert run.stderr.strip() == f"procctl: warning: {warning}"
    assert "0 instances in" in run.stdout and "nothing to run" in run.stdout


def test_live_requests_past_what_a_child_could_run_with_are_refused(project: Project) -> None:
    """`limits --memory 0`, `limits --nofile` over the ceiling and a `scale`
    past port 65535 are one line each; the instance runs on."""
    project.write('[process.web]\ncmd = "sleep 600"\nport = 65534\n')
    proc = project.start("run", "--plain")
    from conftest import wait_until

    wait_until(lambda: project.run("status", "--json").returncode == 0, what="the supervisor")
    for args, expected in (
        (("limits", "web", "--memory", "0"), "memory"),
        (("limits", "web", "--nofile", str(_nofile_over())), "nofile"),
        (("scale", "web=3"), "PORT=65536, past 65535"),
    ):
        done = project.run(*args)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
    status = project.run("status", "--json")
    assert '"state": "running"' in status.stdout
    project.run("down")
    proc.wait(timeout=30)


def test_a_limit_over_the_ceiling_at_spawn_is_one_line_naming_it(tmp_path: Path) -> None:
    """Limits changed after loading (the engine's own check): the instance
    fails with a reason naming the limit, before any fork; never "Exception
    occurred in preexec_fn"."""
    over = _nofile_over()
    with pytest.raises(SpawnError, match=f"nofile {over:,} is over"):
        limits.preexec(Limits(nofile=(over, over)), None)
    path = tmp_path / "procfile.toml"
    path.write_text('[process.a]\ncmd = "true"\n')
    manifest = load_manifest(path)
    spec = manifest.processes["a"]._replace(limits=Limits(nofile=(over, over)))
    plan = build_plan(manifest._replace(processes={"a": spec}))
    bus = Bus()
    seen: list[events.Event] = []
    bus.subscribe(seen.append)
    result = asyncio.run(Supervisor(plan, bus, StateDir.beside(path)).run())
    (inst,) = result.instances
    assert inst.state is State.FAILED
    assert f"nofile {over:,} is over" in inst.reason and "preexec" not in inst.reason
    assert any(isinstance(e, events.Notice) and "nofile" in e.message for e in seen)


def test_the_ceiling_is_the_hard_limit_without_the_capability() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = rlimits.ceiling("nofile")
    assert top is not None and top <= rlimits.nofile_ceiling()
    if not rlimits._privileged():
        assert top == min(hard, rlimits.nofile_ceiling())
    assert rlimits.over_ceiling("nofile", (soft, min(hard, top))) is None
    assert os.path.exists("/proc/sys/fs/nr_open")

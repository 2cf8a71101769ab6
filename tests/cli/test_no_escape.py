"""Nothing a run starts outlives it: not a process that clears its
environment (the guardian's token) and calls setsid (its process group), not
after `down`, not after `kill -9` of procctl, not after `kill -9` of the
guardian first. The run's cgroup holds them: a process cannot leave it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import Project, alive, wait_until

ESCAPER = '[process.svc]\ncmd = "(setsid env -i sleep 305 & echo $! > escaped.pid); exec sleep 600"\n'
"""svc leaves behind a process with no environment, in a session of its own,
whose parent (a subshell) is gone: it is in no tree of the run."""


def _run_group_of(pid: int) -> Path | None:
    """The `procctl.PID.run` group the supervisor `pid` moved into, if any."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[2]
        if path.rstrip("/").endswith(f"procctl.{pid}.run"):
            return Path(path)
    return None


@pytest.fixture
def escaped(project: Project) -> Iterator[list[int]]:
    """The pids of escapers to kill when the test ends, whatever happened
    (they carry no marker: `env -i` cleared it)."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _escaper(project: Project, escaped: list[int]) -> int:
    wait_until(lambda: (project.root / "escaped.pid").exists() and (project.root / "escaped.pid").read_text().strip(), what="the escaper")
    pid = int((project.root / "escaped.pid").read_text())
    escaped.append(pid)
    wait_until(lambda: alive(pid) and psutil.Process(pid).environ() == {}, what="the escaper to clear its environment")
    assert os.getsid(pid) == pid  # its own session: no group signal reaches it
    # No longer below procctl: no tree walk finds it.
    assert not any("procctl" in " ".join(parent.cmdline()) for parent in psutil.Process(pid).parents())
    return pid


def _cmdline(proc: psutil.Process) -> list[str] | None:
    """Its command line; None for a process gone, or a zombie not yet reaped."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return None


def _supervisor(project: Project) -> int:
    return int(json.loads(project.run("status", "--json").stdout)["pid"])


@pytest.fixture(scope="module")
def cgroups_writable() -> None:
    """Skip unless this process may make a cgroup (root, and a writable v2
    or v1 pids/freezer hierarchy): found out here, by making and removing a
    group of the test's own, not by asking procctl."""
    for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/freezer"):
        if not os.path.exists(os.path.join(mount, "cgroup.procs")):
            continue
        probe = Path(mount) / f"procctl-test-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        probe.rmdir()
        return
    pytest.skip("no cgroup can be made here (not root, or no writable cgroup hierarchy)")


def _needs_run_group(pid: int) -> None:
    assert _run_group_of(pid) is not None, "the supervisor is in no run group of its own"


def _guardian(supervisor: int) -> psutil.Process:
    found = [child for child in psutil.Process(supervisor).children() if "PROCCTL_RUN" in child.cmdline()]
    assert len(found) == 1, found
    return found[0]


def test_setsid_env_i_does_not_survive_down(project: Project, escaped: list[int], cgroups_writable: None) -> None:
    """1. `up -d`; svc starts `setsid env -i sleep 305` in the background.
    2. `down`. 3. The escaper is gone too; the supervisor said it killed it."""
    project.write(ESCAPER)
    assert project.run("up", "-d").returncode == 0
    pid = _escaper(project, escaped)
    _needs_run_group(_supervisor(project))
    assert project.run("down").returncode == 0
    wait_until(lambda: not alive(pid), what="the escaper to die with the run")
    log = (project.root / ".procctl" / "supervisor.log").read_text()
    assert "killed 1 process(es) still running after every instance ended, found in the run's cgroup" in log


def test_setsid_env_i_does_not_survive_kill_9_of_procctl(project: Project, escaped: list[int], cgroups_writable: None) -> None:
    """1. `run` in the foreground; the escaper starts. 2. `kill -9` of procctl.
    3. The guardian kills the whole run's cgroup: the escaper and svc."""
    project.write(ESCAPER)
    proc = project.start("run", "--plain")
    pid = _escaper(project, escaped)
    _needs_run_group(proc.pid)
    svc: list[psutil.Process] = []

    def found() -> bool:
        # svc's shell reaps its subshell and then becomes `sleep 600`: until
        # then the subshell may be a zombie, whose command line cannot be read.
        svc[:] = [p for p in psutil.Process(proc.pid).children(recursive=True) if _cmdline(p) == ["sleep", "600"]]
        return len(svc) == 1

    wait_until(found, what="svc's sleep 600")
    proc.kill()
    proc.wait()
    wait_until(lambda: not alive(pid) and not alive(svc[0].pid), what="everything the run started to die")


def test_a_killed_guardian_is_replaced_and_said_so(project: Project, escaped: list[int], cgroups_writable: None) -> None:
    """1. `up -d`; the escaper starts. 2. `kill -9` of the guardian: the
    supervisor notices, says so and starts a new one. 3. `kill -9` of the
    supervisor: the new guardian still kills everything."""
    project.write(ESCAPER)
    assert project.run("up", "-d").returncode == 0
    pid = _escaper(project, escaped)
    supervisor = _supervisor(project)
    _needs_run_group(supervisor)
    old = _guardian(supervisor)
    old.kill()
    log = project.root / ".procctl" / "supervisor.log"
    wait_until(lambda: f"the guardian (pid {old.pid}) died (signal 9): started a new one" in log.read_text(), what="the notice")
    new = _guardian(supervisor)
    assert new.pid != old.pid and f"(pid {new.pid})" in log.read_text()
    assert project.run("status").returncode == 0  # the run goes on
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not alive(pid), what="the escaper to die with the killed supervisor")
    wait_until(lambda: not alive(new.pid), what="the new guardian to finish")


def test_without_cgroups_the_token_still_finds_what_left_its_group(project: Project) -> None:
    """PROCCTL_CGROUPS=off: no run group; a `setsid` escaper that kept its
    environment is still found by the run's token at the end."""
    project.write('[process.svc]\ncmd = "(setsid sleep 305 & echo $! > escaped.pid); exec sleep 600"\n')
    assert project.run("up", "-d", env={"PROCCTL_CGROUPS": "off"}).returncode == 0
    wait_until(lambda: (project.root / "escaped.pid").exists() and (project.root / "escaped.pid").read_text().strip(), what="the escaper")
    pid = int((project.root / "escaped.pid").read_text())
    assert _run_group_of(_supervisor(project)) is None
    assert project.run("down").returncode == 0
    wait_until(lambda: not alive(pid), what="the escaper to die by the token")
    log = (project.root / ".procctl" / "supervisor.log").read_text()
    assert "found in the process table (by the run's token)" in log


def test_the_run_group_holds_the_supervisor_and_goes_away_with_it(tmp_path: Path, cgroups_writable: None) -> None:
    """In a process of its own (it moves the process that calls it): enter,
    fork a child, leave: the child was in the group and is killed, the
    process is back where it was, the group is gone."""
    script = """
import os, subprocess, sys
from procctl.engine.rungroup import RunGroup
before = open("/proc/self/cgroup").read()
group = RunGroup.enter()
if group is None:
    print("none"); sys.exit(0)
# A child is in its parent's group from its fork: Popen returns after it.
child = subprocess.Popen(["setsid", "env", "-i", "sleep", "300"])
inside = child.pid in group.pids()
killed = group.leave()
child.wait()
print(inside, killed, open("/proc/self/cgroup").read() == before, group.path.exists(), child.returncode)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "True", "False", "-9"]


def test_a_replaced_guardian_in_the_group_does_not_keep_it_at_the_end(project: Project, escaped: list[int], cgroups_writable: None) -> None:
    """1. `up -d`; the escaper starts. 2. `kill -9` of the guardian: its
    successor is started from inside the run's group. 3. `down`: the
    escaper is killed, the successor ends, and the group is removed (the
    successor does not hold it)."""
    from procctl.engine.rungroup import _v2_own_group

    project.write(ESCAPER)
    assert project.run("up", "-d").returncode == 0
    pid = _escaper(project, escaped)
    supervisor = _supervisor(project)
    _needs_run_group(supervisor)
    group = _v2_own_group(Path(f"/proc/{supervisor}"))
    if group is None or group.name != f"procctl.{supervisor}.run":
        pytest.skip("no cgroup v2 group here (the run used a v1 hierarchy)")
    old = _guardian(supervisor)
    old.kill()
    log = project.root / ".procctl" / "supervisor.log"
    wait_until(lambda: f"the guardian (pid {old.pid}) died (signal 9)" in log.read_text(), what="the notice")
    new = _guardian(supervisor)
    assert str(new.pid) in (group / "cgroup.procs").read_text().split()
    assert project.run("down").returncode == 0
    wait_until(lambda: not alive(supervisor), what="the supervisor to end")
    assert not alive(pid) and not alive(new.pid)
    assert not group.exists()
    assert "killed 1 process(es) still running after every instance ended, found in the run's cgroup" in log.read_text()


def test_a_run_that_ends_leaves_no_group_and_no_guardian(project: Project, cgroups_writable: None) -> None:
    """1. `run` in the foreground; its job waits for a file. 2. While it
    runs, its group and its guardian are found. 3. The file is made: the
    job ends, the run exits 0, and neither its group nor its guardian is
    left (the supervisor moves out of the group while the run ends, and
    waits for that before it exits)."""
    from procctl.engine.rungroup import _v2_own_group

    project.write('[process.a]\ncmd = "while [ ! -e go ]; do sleep 0.05; done"\n')
    live = project.start("run", "--plain")
    wait_until(lambda: "a started" in (project.root / "procctl-0.out").read_text(), what="a to start")
    group = _v2_own_group(Path(f"/proc/{live.pid}"))
    if group is None or group.name != f"procctl.{live.pid}.run":
        live.kill()
        live.wait()
        pytest.skip("no cgroup v2 group here (the run used a v1 hierarchy)")
    guardian = _guardian(live.pid)
    assert group.is_dir()
    (project.root / "go").touch()
    assert live.wait(timeout=60) == 0
    assert not group.exists()
    assert not psutil.pid_exists(guardian.pid)


def test_a_run_refused_while_its_group_is_made_leaves_no_group(project: Project, cgroups_writable: None) -> None:
    """`run` starts its guardian and its move into the run's cgroup on a
    thread once it holds its lock, while it imports the engine
    (engine/headstart.py). A run refused after that (a --junit file it
    cannot write) undoes both: no group of it is left for a later sweep."""
    from procctl.engine.rungroup import _v2_own_group

    project.write('[process.a]\ncmd = "sleep 60"\n')
    live = project.start("run", "--plain")
    wait_until(lambda: "a started" in (project.root / "procctl-0.out").read_text(), what="a to start")
    # Where this machine makes a run's group: beside the group we are in.
    group = _v2_own_group(Path(f"/proc/{live.pid}"))
    if group is None or group.name != f"procctl.{live.pid}.run":
        pytest.skip("no cgroup v2 group here (the run used a v1 hierarchy)")
    live.send_signal(signal.SIGINT)
    assert live.wait(timeout=60) == 130
    refused = project.start("run", "--plain", "--junit", "no-such-dir/report.xml")
    assert refused.wait(timeout=60) == 2
    err = (project.root / "procctl-1.err").read_text()
    assert err.startswith("procctl: --junit") and err.count("\n") == 1, err
    assert group.parent.is_dir() and not (group.parent / f"procctl.{refused.pid}.run").exists()


def test_an_escaper_holding_the_output_pipe_does_not_hold_up_a_stop(project: Project, escaped: list[int]) -> None:
    """The escaper keeps svc's stdout open, but is in no tree of svc's:
    `down` stops svc, waits a grace for the pipe and goes on, rather than
    waiting out svc's stop timeout of ten minutes for a pipe that never
    closes (the command's deadline is two)."""
    project.write(ESCAPER + 'stop_timeout = "600s"\n')
    assert project.run("up", "-d").returncode == 0
    _escaper(project, escaped)
    done = project.run("down", timeout=120)
    assert done.returncode == 0, done

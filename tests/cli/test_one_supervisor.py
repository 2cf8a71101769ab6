"""One supervisor per manifest: an exclusive lock on `.procctl/supervisor.lock`
held for the supervisor's whole life decides, not the socket."""

from __future__ import annotations

import json
import re

import psutil
from conftest import Project, alive, marked_pids, wait_until

MANIFEST = '[process.a]\ncmd = "echo hello from a; sleep 120"\n'


def _supervisors(project: Project) -> list[int]:
    """Every live `procctl run` of this test."""
    found = []
    for pid in marked_pids(project.marker):
        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if cmdline[1:4] == ["-m", "procctl", "run"]:
            found.append(pid)
    return found


def _refused_naming(result_rc: int, stderr: str, pid: int) -> None:
    assert result_rc == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert re.fullmatch(rf"procctl: a supervisor is already running for .*procfile\.toml \(pid {pid}\); 'procctl down' stops it", lines[0]), lines[0]


def _already_up(result_rc: int, stdout: str, stderr: str, pid: int) -> None:
    """A second `up -d` is no error, as in docker compose: it says which supervisor runs."""
    assert result_rc == 0 and not stderr, stderr
    assert re.fullmatch(
        rf"already up: a supervisor is already running for .*procfile\.toml \((pid {pid}|its pid not yet in .*)\); 'procctl down' stops it\n", stdout
    ), stdout


def _log(project: Project) -> str:
    return (project.root / ".procctl" / "supervisor.log").read_text()


def test_three_concurrent_up_start_exactly_one(project: Project) -> None:
    """1. Three `up -d` at once.
    2. One starts the supervisor; the other two say it is already up, naming
       its pid; all three exit 0 (as docker compose's `up -d`).
    3. One supervisor runs, and its log holds its output: no loser truncated it."""
    project.write(MANIFEST)
    ups = [project.start("up", "-d") for _ in range(3)]
    for up in ups:
        up.wait(timeout=60)
    codes = [up.returncode for up in ups]
    assert codes == [0, 0, 0], [(up.returncode, up.err_path.read_text()) for up in ups]  # type: ignore[attr-defined]
    winners = [up for up in ups if " is up" in up.out_path.read_text()]  # type: ignore[attr-defined]
    assert len(winners) == 1, [up.out_path.read_text() for up in ups]  # type: ignore[attr-defined]
    pid = int(re.search(r"supervisor (\d+) is up", winners[0].out_path.read_text()).group(1))  # type: ignore[attr-defined, union-attr]
    for loser in (up for up in ups if up is not winners[0]):
        _already_up(loser.returncode, loser.out_path.read_text(), loser.err_path.read_text(), pid)  # type: ignore[attr-defined]
    assert _supervisors(project) == [pid]
    wait_until(lambda: "hello from a" in _log(project), what="the supervisor's output in its log")
    status = json.loads(project.run("status", "--json").stdout)
    assert status["pid"] == pid and [row["state"] for row in status["instances"]] == ["running"]
    assert project.run("down").returncode == 0


def test_a_removed_socket_does_not_let_a_second_supervisor_start(project: Project) -> None:
    """1. A supervisor runs (up -d); its socket file is removed.
    2. `run` is refused and `up -d` says it is up already, both naming its
       pid; nothing else starts.
    3. supervisor.log still holds what the first one wrote."""
    project.write(MANIFEST)
    up = project.run("up", "-d")
    assert up.returncode == 0, up.stderr
    pid = int(re.search(r"supervisor (\d+) is up", up.stdout).group(1))  # type: ignore[union-attr]
    wait_until(lambda: "hello from a" in _log(project), what="the supervisor's output in its log")
    (project.root / ".procctl" / "procctl.sock").unlink()
    for args in (("run",), ("run", "--plain", "a"), ("up",)):
        result = project.run(*args)
        _refused_naming(result.returncode, result.stderr, pid)
    again = project.run("up", "-d")
    _already_up(again.returncode, again.stdout, again.stderr, pid)
    assert _supervisors(project) == [pid]
    assert "hello from a" in _log(project)
    assert (project.root / ".procctl" / "supervisor.lock").read_text() == f"{pid}\n"


def test_the_lock_goes_with_the_supervisor(project: Project) -> None:
    """1. A foreground supervisor holds the lock; it ends (even by SIGKILL).
    2. The next one starts at once: the kernel dropped the lock with it."""
    project.write('[process.a]\ncmd = "sleep 120"\n')
    first = project.start("run", "--plain")
    wait_until(lambda: project.run("status", "--json").returncode == 0, what="the first supervisor")
    assert (project.root / ".procctl" / "supervisor.lock").read_text() == f"{first.pid}\n"
    first.kill()
    first.wait(timeout=30)
    up = project.run("up", "-d")
    assert up.returncode == 0, up.stderr
    assert project.run("down").returncode == 0


def test_two_manifests_in_one_directory_are_not_taken_for_each_other(project: Project) -> None:
    """a.toml's supervisor runs; b.toml sits beside it (they share
    .procctl). `up -d`, `run`, `status`, `kill` and `down` with -f b.toml
    each say so, with the right exit code, and a's supervisor runs on."""
    a = project.write('[process.a]\ncmd = "sleep 60"\n', name="a.toml")
    project.write('[process.b]\ncmd = "sleep 60"\n', name="b.toml")
    assert project.run("up", "-d", "-f", "a.toml").returncode == 0
    try:
        pid = json.loads(project.run("status", "--json", "-f", "a.toml").stdout)["pid"]
        why = (f"the supervisor in {project.root} (pid {pid}) runs {a}, not b.toml: a directory runs one manifest at a time "
               f"(they share its .procctl); 'procctl down -f {a}' stops it, or give b.toml a directory of its own")  # fmt: skip
        for args, code in ((("up", "-d"), 2), (("run", "--plain"), 2), (("status",), 3), (("status", "--json"), 3), (("kill", "b"), 3)):
            refused = project.run(*args, "-f", "b.toml")
            assert (refused.returncode, refused.stderr) == (code, f"procctl: {why}\n"), (args, refused)
        down = project.run("down", "-f", "b.toml")
        assert (down.returncode, down.stdout) == (0, f"already down: {why}\n"), down
        assert alive(pid)
        (project.root / "sub").mkdir()
        assert project.run("status", "-f", str(project.root / "sub" / ".." / "a.toml")).returncode == 0  # a.toml, spelt otherwise
    finally:
        project.run("down", "-f", "a.toml")


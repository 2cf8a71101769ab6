"""State files in a directory others can write: procctl (as root) never
follows a link another user planted in or as `.procctl` (or the socket's
fallback directory), never writes where that user owns the place, and says so
in one line with exit 2. Every planted link points at a file and a directory
of root's, which must come out untouched, content and mode."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Project, alive, wait_until

MANIFEST = '[process.web]\ncmd = "echo hello from web"\n'
SECRET = b"root's own data\n"


@dataclasses.dataclass(frozen=True)
class Intruder:
    """Another local user, who plants things with plain shell commands."""

    name: str
    uid: int
    gid: int

    def plant(self, script: str, cwd: Path) -> None:
        subprocess.run(
            ["sh", "-ec", script], cwd=cwd, user=self.uid, group=self.gid, extra_groups=[],
            env={"PATH": "/usr/bin:/bin"}, check=True,
        )  # fmt: skip


@pytest.fixture(scope="session")
def intruder() -> Iterator[Intruder]:
    if os.geteuid() != 0:
        pytest.skip("planting another user's links needs root, to create that user")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed: no other user to plant links as")
    name = f"pctest{uuid.uuid4().hex[:10]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        info = pwd.getpwnam(name)
        yield Intruder(name, info.pw_uid, info.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False)


@dataclasses.dataclass
class Targets:
    """What a planted link points at: root's file and root's directory."""

    file: Path
    directory: Path

    def snapshot(self) -> tuple[bytes, int, int, list[str]]:
        return (
            self.file.read_bytes(),
            stat.S_IMODE(self.file.stat().st_mode),
            stat.S_IMODE(self.directory.stat().st_mode),
            sorted(os.listdir(self.directory)),
        )


@pytest.fixture
def targets(tmp_path: Path) -> Targets:
    found = Targets(tmp_path / "secret", tmp_path / "rootdir")
    found.file.write_bytes(SECRET)
    found.file.chmod(0o640)
    found.directory.mkdir()
    found.directory.chmod(0o755)
    (found.directory / "keep").write_text("x")
    return found


@pytest.fixture
def shared() -> Iterator[Project]:
    """A project in a directory everyone may write (sticky, as /tmp is)."""
    root = Path(tempfile.mkdtemp(prefix="procctl-shared-", dir="/tmp"))
    root.chmod(0o1777)
    project = Project(root, uuid.uuid4().hex)
    project.write(MANIFEST)
    try:
        yield project
    finally:
        project.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procctl: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _loose_state(project: Project) -> Path:
    """A `.procctl` of root's that others could write (left so from before)."""
    state = project.root / ".procctl"
    (state / "logs").mkdir(parents=True)
    state.chmod(0o777)
    (state / "logs").chmod(0o777)
    return state


@pytest.mark.parametrize("command", [("run",), ("up", "-d"), ("logs",), ("history",), ("status",), ("status", "--json")])
def test_a_procctl_link_is_refused_by_every_command(intruder: Intruder, shared: Project, targets: Targets, command: tuple[str, ...]) -> None:
    """1. Another user makes `.procctl` a link to a directory of root's.
    2. Root's procctl refuses it in one line, exit 2; the directory keeps its mode and content."""
    before = targets.snapshot()
    intruder.plant(f"ln -s {targets.directory} .procctl", shared.root)
    _refused(shared.run(*command), ".procctl is a symbolic link")
    assert targets.snapshot() == before


def test_a_procctl_file_is_refused(intruder: Intruder, shared: Project) -> None:
    intruder.plant("echo mine > .procctl", shared.root)
    _refused(shared.run("run"), ".procctl is not a directory")
    _refused(shared.run("logs"), ".procctl is not a directory")


@pytest.mark.parametrize("command", [("run",), ("up", "-d"), ("logs",), ("history",), ("status",)])
def test_a_procctl_of_another_user_is_refused(intruder: Intruder, shared: Project, targets: Targets, command: tuple[str, ...]) -> None:
    """1. Another user makes `.procctl` (open to all) with links to root's file.
    2. Root's procctl refuses to use it at all; the file is untouched."""
    before = targets.snapshot()
    intruder.plant(
        f"mkdir -m 777 .procctl .procctl/logs; ln -s {targets.file} .procctl/supervisor.log; "
        f"ln -s {targets.file} .procctl/logs/web.log; ln -s {targets.file} .procctl/state.db",
        shared.root,
    )
    _refused(shared.run(*command), ".procctl belongs to another user", f"uid {intruder.uid}")
    assert targets.snapshot() == before


PLANTED = [
    "supervisor.log",
    "supervisor.pid",
    "supervisor.lock",
    "state.db",
    "state.db-journal",
    "state.db-wal",
    "procctl.sock",
    ".gitignore",
    "logs/web.log",
]


@pytest.mark.parametrize("name", PLANTED)
@pytest.mark.parametrize("command", [("run",), ("up", "-d")])
def test_a_link_planted_in_a_loose_state_dir_is_refused(
    intruder: Intruder, shared: Project, targets: Targets, name: str, command: tuple[str, ...]
) -> None:
    """1. Root's `.procctl` was left writable by others; another user plants one link in it.
    2. `run` and `up -d` refuse before anything starts; the target is untouched."""
    state = _loose_state(shared)
    before = targets.snapshot()
    intruder.plant(f"ln -s {targets.file} .procctl/{name}", shared.root)
    _refused(shared.run(*command), f"{name} is a symbolic link")
    assert targets.snapshot() == before
    assert not (state / "logs" / "web.log").exists() or name == "logs/web.log"
    # Refused, the directory stays as it was: the next run checks it again.
    _refused(shared.run(*command), f"{name} is a symbolic link")


def test_a_planted_logs_dir_link_is_refused(intruder: Intruder, shared: Project, targets: Targets) -> None:
    state = _loose_state(shared)
    (state / "logs").rmdir()
    before = targets.snapshot()
    intruder.plant(f"ln -s {targets.directory} .procctl/logs", shared.root)
    for command in (("run",), ("up", "-d"), ("logs",)):
        _refused(shared.run(*command), "logs is a symbolic link")
    assert targets.snapshot() == before


@pytest.mark.parametrize("name", ["supervisor.log", "logs/web.log", "state.db"])
def test_a_file_of_another_user_in_a_loose_state_dir_is_refused(intruder: Intruder, shared: Project, name: str) -> None:
    _loose_state(shared)
    intruder.plant(f"echo theirs > .procctl/{name}", shared.root)
    _refused(shared.run("run"), f"{name} belongs to another user")
    assert (shared.root / ".procctl" / name).read_text() == "theirs\n"


def test_logs_refuses_to_read_through_a_link(intruder: Intruder, shared: Project, targets: Targets) -> None:
    """1. A planted link stands where web's log would be.
    2. `procctl logs web` (no supervisor, nothing prepared) refuses it and prints nothing of the target."""
    _loose_state(shared)
    intruder.plant(f"ln -s {targets.file} .procctl/logs/web.log", shared.root)
    for args in (("logs", "web"), ("logs",), ("logs", "web", "-n", "5")):
        result = shared.run(*args)
        _refused(result, "web.log is a symbolic link")
        assert "root's own data" not in result.stdout


def _deep(project: Project) -> Path:
    """A manifest whose `.procctl/procctl.sock` is too long for a Unix socket."""
    deep = project.root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "procfile.toml").write_text('[process.a]\ncmd = "sleep 60"\n')
    return deep / "procfile.toml"


@pytest.mark.parametrize("plant", ["link", "theirs"])
def test_the_socket_fallback_dir_is_checked(intruder: Intruder, shared: Project, targets: Targets, plant: str) -> None:
    """1. A manifest path too long for a socket: the socket goes to $TMPDIR/procctl-UID/.
    2. Another user made that directory first (a link to root's, or their own).
    3. The supervisor refuses it in one line, exit 2; root's directory is untouched."""
    manifest = _deep(shared)
    tmpdir = shared.root / "tmp"
    tmpdir.mkdir(mode=0o1777)
    tmpdir.chmod(0o1777)
    fallback = f"procctl-{os.geteuid()}"
    before = targets.snapshot()
    script = f"ln -s {targets.directory} {fallback}" if plant == "link" else f"mkdir -m 777 {fallback}"
    intruder.plant(script, tmpdir)
    env = {"TMPDIR": str(tmpdir), "XDG_RUNTIME_DIR": ""}
    words = "is a symbolic link" if plant == "link" else "belongs to another user"
    _refused(shared.run("run", "-f", str(manifest), env=env), fallback, words)
    _refused(shared.run("status", "-f", str(manifest), env=env), fallback, words)
    assert targets.snapshot() == before


def test_a_runtime_dir_of_another_user_is_not_used(intruder: Intruder, shared: Project) -> None:
    """1. $XDG_RUNTIME_DIR names another user's directory (sudo keeps it).
    2. The long-path socket goes to $TMPDIR/procctl-UID/ instead, 0700, and control works."""
    manifest = _deep(shared)
    theirs = shared.root / "run-user"
    intruder.plant(f"mkdir -m 700 {theirs.name}", shared.root)
    tmpdir = shared.root / "tmp"
    tmpdir.mkdir()
    tmpdir.chmod(0o1777)
    env = {"TMPDIR": str(tmpdir), "XDG_RUNTIME_DIR": str(theirs)}
    up = shared.run("up", "-d", "-f", str(manifest), env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert os.listdir(theirs) == []
        private = tmpdir / f"procctl-{os.geteuid()}"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.geteuid()
        assert [entry.suffix for entry in private.iterdir()] == [".sock"]
        assert shared.run("status", "-f", str(manifest), env=env).returncode == 0
    finally:
        assert shared.run("down", "-f", str(manifest), env=env).returncode == 0


def test_a_project_dir_swapped_for_a_link_under_a_running_supervisor_gets_nothing_through_it(
    intruder: Intruder, shared: Project, targets: Targets
) -> None:
    """1. `up -d` in a project directory another user owns (in a directory
    they may write). 2. That user moves the project away and puts a link to a
    directory of root's in its place. 3. The supervisor says so in its log
    and serves on from where the project went: nothing lands in root's
    directory; `status` and `down` work from the project's new name, and the
    run's state stays in its own `.procctl`."""
    project = Project(shared.root / "proj", shared.marker)
    project.root.mkdir()
    project.write('[process.a]\ncmd = "sleep 600"\n')
    os.chown(project.root, intruder.uid, intruder.gid)
    os.chown(project.manifest, intruder.uid, intruder.gid)
    before = targets.snapshot()
    assert project.run("up", "-d").returncode == 0
    pid = 0
    try:
        pid = json.loads(project.run("status", "--json").stdout)["pid"]
        intruder.plant(f"mv proj proj.old && ln -s {targets.directory} proj", shared.root)
        moved = Project(shared.root / "proj.old", shared.marker)
        log = moved.root / ".procctl" / "supervisor.log"
        wait_until(
            lambda: (targets.directory / ".procctl").exists() or "was moved or replaced" in log.read_text(),
            timeout=30, what="the supervisor to notice its directory moved",
        )  # fmt: skip
        assert targets.snapshot() == before
        assert f"serving on from {moved.root / '.procctl'}" in log.read_text()
        status = moved.run("status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["pid"] == pid, status
        assert project.run("status").returncode == 2  # no manifest where the link leads
        down = moved.run("down")
        assert down.returncode == 0 and f"supervisor {pid} stopped" in down.stdout, down
        wait_until(lambda: not alive(pid), what="the supervisor to stop")
        assert targets.snapshot() == before
        assert (moved.root / ".procctl" / "state.db").exists() and "1 stopped" in log.read_text()  # its end written where it runs
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive(pid), what="the supervisor to stop")


def test_a_shared_project_runs_with_a_private_ignored_state_dir(shared: Project) -> None:
    """1. In a directory everyone may write, with nothing planted, `run` works.
    2. `.procctl` is root's, 0700, and carries a `.gitignore` that hides it from git."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(shared.root)], check=True)
    result = shared.run("run", "--plain")
    assert result.returncode == 0, result.stderr
    assert "hello from web" in result.stdout
    state = shared.root / ".procctl"
    info = state.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "-C", str(shared.root), "status", "--porcelain", "--untracked-files=all"], capture_output=True, text=True, check=True)
    assert status.stdout.splitlines() == ["?? procfile.toml"]

"""engine.store, in process: every way into `.procctl/` refuses a link, a
file that is not a regular one, and a second hard link, and leaves what they
point at as it was (the cross-user cases are in tests/cli/test_state_safety.py)."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from types import SimpleNamespace

import pytest

from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.control.address import socket_location
from procctl.engine import logindex, runfiles
from procctl.engine.logfile import LogFile
from procctl.engine.logread import read_log_tail
from procctl.engine.store import StateDir
from procctl.errors import StateDirError

DATA = b"keep me\n"


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    found = StateDir(tmp_path / "project" / ".procctl")
    found.root.parent.mkdir()
    found.prepare()
    return found


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.write_bytes(DATA)
    path.chmod(0o600)
    return path


def _untouched(path: Path) -> None:
    assert path.read_bytes() == DATA and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_prepare_makes_a_private_dir_with_logs_and_a_gitignore(state: StateDir) -> None:
    for directory in (state.root, state.logs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (state.root / ".gitignore").read_text().splitlines()[-1] == "*"
    # Again: nothing changes, an edited .gitignore is left alone.
    (state.root / ".gitignore").write_text("mine\n")
    state.prepare()
    assert (state.root / ".gitignore").read_text() == "mine\n"


@pytest.mark.parametrize("truncate", [False, True])
def test_a_log_link_is_refused_for_writing_and_reading(state: StateDir, target: Path, truncate: bool) -> None:
    (state.logs / "web.log").symlink_to(target)
    with pytest.raises(StateDirError, match="web.log is a symbolic link"):
        state.open_log("web.log", truncate=truncate)
    with pytest.raises(StateDirError, match="web.log is a symbolic link"):
        read_log_tail(state.log_path("web.log"), 10)
    _untouched(target)


def test_a_dangling_link_is_not_created_through(state: StateDir, tmp_path: Path) -> None:
    (state.root / "supervisor.pid").symlink_to(tmp_path / "created-by-procctl")
    with pytest.raises(StateDirError, match="symbolic link"):
        state.write_pid(123)
    assert not (tmp_path / "created-by-procctl").exists()


def test_a_second_hard_link_is_refused_before_truncating(state: StateDir, target: Path) -> None:
    os.link(target, state.logs / "web.log")
    with pytest.raises(StateDirError, match="other hard links"):
        state.open_log("web.log", truncate=True)
    _untouched(target)


def test_a_fifo_is_refused_without_blocking(state: StateDir) -> None:
    os.mkfifo(state.logs / "web.log")
    # Without a reader a blocking open would hang; with one it would succeed.
    with pytest.raises(StateDirError, match="not a regular file"):
        state.open_log("web.log", truncate=True)
    reader = os.open(state.logs / "web.log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(StateDirError, match="not a regular file"):
            state.open_log("web.log", truncate=True)
    finally:
        os.close(reader)


def test_truncation_and_append_of_our_own_log(state: StateDir) -> None:
    for data, truncate in ((b"first\n", True), (b"second\n", False)):
        fd = state.open_log("web.log", truncate=truncate)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    assert (state.logs / "web.log").read_bytes() == b"first\nsecond\n"
    fd = state.open_log("web.log", truncate=True)
    os.close(fd)
    assert (state.logs / "web.log").read_bytes() == b""
    assert stat.S_IMODE((state.logs / "web.log").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm", "state.db-journal"])
def test_the_database_is_reached_only_without_links(state: StateDir, target: Path, name: str) -> None:
    (state.root / name).symlink_to(target)
    with pytest.raises(StateDirError, match=f"{name} is a symbolic link"):
        state.reach("state.db", create=True, companions=("state.db-journal", "state.db-wal", "state.db-shm"))
    _untouched(target)


def test_the_database_path_goes_through_the_checked_directory(state: StateDir, tmp_path: Path) -> None:
    """1. The database's path is /proc/self/fd/N/state.db, N the checked `.procctl`.
    2. `.procctl` renamed away and replaced by a link: the path still leads to the checked one."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    location = state.reach("state.db", create=True)
    assert location is not None and location.startswith("/proc/self/fd/")
    moved = state.root.with_name("moved")
    state.root.rename(moved)
    state.root.symlink_to(elsewhere)
    Path(location).write_bytes(b"x")
    assert (moved / "state.db").read_bytes() == b"x" and os.listdir(elsewhere) == []
    # Asked again by name, the link is refused.
    with pytest.raises(StateDirError, match=".procctl is a symbolic link"):
        state.reach("state.db", create=True)


def test_reading_without_state_creates_nothing(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".procctl")
    assert state.reach("state.db", create=False) is None
    assert state.log_names() == []
    with pytest.raises(FileNotFoundError):
        state.open("logs/web.log", os.O_RDONLY)
    assert not state.root.exists()


def test_a_link_at_the_socket_name_is_refused(state: StateDir, target: Path) -> None:
    state.socket.symlink_to(target)
    for create in (True, False):
        with pytest.raises(StateDirError, match="procctl.sock is a symbolic link"):
            socket_location(state.socket, create=create)
    _untouched(target)


def test_a_new_log_is_opened_as_an_existing_one_is(state: StateDir) -> None:
    """A log made now (the usual case, taken without the checks an existing
    file needs) is opened as a checked one: blocking, appending, close-on-exec."""
    made = state.open_log("new.log", truncate=True)
    (state.logs / "old.log").write_bytes(DATA)
    checked = state.open_log("old.log", truncate=True)
    try:
        for fd in (made, checked):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            assert flags & os.O_APPEND and not flags & os.O_NONBLOCK
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert os.fstat(fd).st_size == 0
    finally:
        os.close(made)
        os.close(checked)
    assert stat.S_IMODE((state.logs / "new.log").stat().st_mode) == 0o644


def _log(state: StateDir, name: str, *, max_bytes: int | None = None, keep: int = 3) -> LogFile:
    return LogFile(
        state.open_log(name, truncate=True),
        open_index=lambda truncate: state.open_log_index(name, truncate=truncate),
        rotate=lambda: state.rotate_log(name, keep),
        max_bytes=max_bytes,
    )


def test_a_logs_index_is_made_with_its_first_piece(state: StateDir) -> None:
    """A log that gets no byte has no index file; the first piece makes it,
    with the piece's mark; a rotation moves it up with its log, and the new
    file gets its own index at its first piece."""
    log = _log(state, "web.log", max_bytes=10)
    try:
        assert sorted(os.listdir(state.logs)) == ["web.log"]
        log.write(b"12345678\n")
        index = (state.logs / "web.log.idx").read_bytes()
        assert [position for position, _ in logindex.RECORD.iter_unpack(index)] == [0]
        log.write(b"abcdefgh\n")  # past 10 bytes: rotates first
        assert (state.logs / "web.log.1.idx").read_bytes() == index
        marks = logindex.RECORD.iter_unpack((state.logs / "web.log.idx").read_bytes())
        assert [position for position, _ in marks] == [9]
    finally:
        log.close()
    assert read_log_tail(state.log_path("web.log"), 10) == b"abcdefgh\n"


def test_a_rotation_without_an_index_leaves_no_stale_one(state: StateDir) -> None:
    """An older index whose log is replaced by one without an index (its
    index could not be made) is removed, not left beside the wrong file."""
    (state.logs / "web.log.1").write_bytes(b"older\n")
    (state.logs / "web.log.1.idx").write_bytes(logindex.RECORD.pack(0, 1.0))
    fd = state.open_log("web.log", truncate=True)
    os.write(fd, b"newer\n")
    os.close(fd)
    os.close(state.rotate_log("web.log", 1))
    assert sorted(os.listdir(state.logs)) == ["web.log", "web.log.1"]
    assert (state.logs / "web.log.1").read_bytes() == b"newer\n"


def test_past_runs_are_kept_to_their_number_when_a_run_ends(state: StateDir) -> None:
    """1. Each run's start moves the last run's logs to `logs/past/` and deletes none.
    2. Its end deletes the oldest beyond KEEP_PAST_RUNS.
    3. Runs that end without it leave at most twice as many: a start deletes beyond that."""
    keep = logindex.KEEP_PAST_RUNS
    for number in range(1, keep + 3):
        state.begin_run(f"{1000 + number}-1", {})
        state.open_log("web", truncate=True)  # (a run with logs of its own: the next moves them)
    assert state.past_runs() == [f"{1000 + number}-1" for number in range(1, keep + 2)]
    state.prune_past_runs()
    assert state.past_runs() == [f"{1000 + number}-1" for number in range(2, keep + 2)]
    for number in range(keep + 3, 3 * keep + 3):
        state.begin_run(f"{1000 + number}-1", {})
        state.open_log("web", truncate=True)
        assert len(state.past_runs()) <= 2 * keep
    state.prune_past_runs()
    assert state.past_runs() == [f"{1000 + number}-1" for number in range(2 * keep + 2, 3 * keep + 2)]


def _silent_start(state: StateDir, made: runfiles.MadeLogs, name: str, *, truncate: bool) -> LogFile:
    """An instance's log as a run opens it, opened as its start opens it."""
    manifest = state.root.parent / f"{name}.toml"
    manifest.write_text(f'[process.{name}]\ncmd = "true"\n')
    job = build_plan(load_manifest(manifest)).jobs[0]
    runner = SimpleNamespace(job=job, log_path=state.log_path(job.log_name), process=name, name=name)  # (read on errors only)
    log = runfiles.instance_log(state, Bus(), runner, job, truncate=truncate, made=made)  # type: ignore[arg-type]
    log.open_file()
    return log


def test_a_start_looks_for_no_log_the_run_cannot_have(state: StateDir) -> None:
    """A run's logs begin empty and a log's file comes with its first byte,
    so a start opens only a file this run made (a restart's), never one
    that appeared where none can be: it is made afresh at the first byte.
    1. Logs that begin empty, an `a.log` put there afterwards: the start of
       `a` does not open it (and the first byte truncates it).
    2. A file the run made (`b`, written): a later start opens it.
    3. Where the logs did not begin empty (nothing said so), every start
       looks: `c.log` is opened."""
    made = runfiles.MadeLogs()
    state.begin_run("1000-1", {})
    made.began_empty()
    (state.logs / "a.log").write_bytes(b"not this run's\n")
    first = _silent_start(state, made, "a", truncate=True)
    assert first.fd < 0, "no file looked for"
    first.write(b"new\n")
    first.close()
    assert (state.logs / "a.log").read_bytes() == b"new\n"

    writer = _silent_start(state, made, "b", truncate=True)
    writer.write(b"first run\n")
    writer.close()
    again = _silent_start(state, made, "b", truncate=False)
    assert again.fd >= 0, "the run's own file is opened at the next start"
    again.close()

    (state.logs / "c.log").write_bytes(b"left\n")
    unknown = _silent_start(state, runfiles.MadeLogs(), "c", truncate=False)
    assert unknown.fd >= 0
    unknown.close()


def test_made_logs_stop_knowing_past_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    made = runfiles.MadeLogs()
    assert made.may_exist("x.log"), "before the run's logs begin: anything may be there"
    made.began_empty()
    assert not made.may_exist("x.log")
    monkeypatch.setattr(runfiles, "MAX_LOGS_KNOWN", 3)
    for name in ("a", "b", "c"):
        made.made(name)
    assert made.may_exist("a") and not made.may_exist("x.log")
    made.made("d")
    assert made.may_exist("x.log"), "past the bound every start looks again"

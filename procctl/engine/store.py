"""Where a manifest's state lives — `.procctl/` beside the manifest — and
what lies in it: its layout, the logs of the current and past runs, the lock
and pid of the one supervisor.

Everything in it is opened through `engine.safeopen`: never through a
symbolic link, never what someone else owns.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from pathlib import Path

from procctl.engine import logindex
from procctl.engine.safeopen import DIR_FLAGS, check_entry, checked_dir, fd_path, hold, make_private, open_in
from procctl.errors import AlreadyRunning, StateDirError

LOCK_NAME = "supervisor.lock"
"""Held (flock, exclusive) by the one supervisor of a manifest for its whole
life; holds its pid. Never removed: removing a lock file lets a second
holder lock a second file."""
LOCK_FD_VAR = "PROCCTL_SUPERVISOR_LOCK_FD"
"""Set by `up -d` for the supervisor it starts: the descriptor of the lock it
took for it, passed on open."""
HOLDER_WAIT_S = 5.0
"""How long a refused supervisor waits for the holder to write its pid."""

GITIGNORE = "# Created by procctl: its run state is not for version control.\n*\n"
"""`.procctl/.gitignore`, as pytest, ruff and mypy mark their caches."""


class StateDir:
    """The `.procctl/` directory (`root`) and what it holds. A plain class:
    the control client loads this module, and a dataclass would make it
    load dataclasses and inspect too."""

    __slots__ = ("root", "_logs")
    root: Path
    _logs: Path

    def __init__(self, root: Path) -> None:
        object.__setattr__(self, "root", root)
        # Made once: a run asks for it with every instance's log path.
        object.__setattr__(self, "_logs", root / "logs")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"StateDir is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return type(other) is StateDir and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"StateDir(root={self.root!r})"

    @classmethod
    def beside(cls, manifest_path: Path) -> StateDir:
        return cls(manifest_path.parent / ".procctl")

    @property
    def logs(self) -> Path:
        return self._logs

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def socket(self) -> Path:
        return self.root / "procctl.sock"

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    def log_path(self, log_name: str) -> Path:
        return self.logs / log_name

    def hold(self) -> None:
        """For a process that lives on (the supervisor): from now on, reach
        this `.procctl` in the directory it is in now, wherever that is
        moved, never by its path again (`safeopen.hold`)."""
        hold(self.root.absolute().parent)

    # ------------------------------------------------------ checked access

    def _dir(self, sub: str | None, *, create: bool) -> int | None:
        """The checked `.procctl` (or `sub` in it, reached through the
        checked `.procctl` itself); None when it does not exist and not `create`."""
        root = checked_dir(self.root.absolute(), create=create, shown=self.root)
        if root is None or sub is None:
            return root
        return checked_dir(sub, create=create, dir_fd=root, shown=self.root / sub)

    def prepare(self) -> None:
        """Create (or check) `.procctl/` and its `logs/`, both 0700, and its
        `.gitignore`. Where others could write, what they left is checked
        first (`make_private`)."""
        root = self._dir(None, create=True)
        assert root is not None
        loose = stat.S_IMODE(os.fstat(root).st_mode) & 0o022
        logs = self._dir("logs", create=True)
        assert logs is not None
        make_private(logs, self.logs, scan=bool(loose))  # reachable by others until now
        make_private(root, self.root)
        try:
            fd = open_in(root, ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, shown=self.root / ".gitignore")
        except FileExistsError:
            return  # the user's own, or ours from before
        try:
            os.write(fd, GITIGNORE.encode())
        finally:
            os.close(fd)

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """A descriptor of `name` (`supervisor.log`, `logs/web.log`) opened
        without following links (see `open_in`). Reading from a `.procctl`
        that does not exist is FileNotFoundError; writing creates it."""
        sub, _, leaf = name.rpartition("/")
        dir_fd = self._dir(sub or None, create=bool(flags & os.O_CREAT))
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(self.root / name))
        return open_in(dir_fd, leaf, flags, mode, shown=self.root / name)

    def open_log(self, log_name: str, *, truncate: bool, create: bool = True) -> int:
        """The log of an instance, for appending (truncated at the first start
        of a run); without `create`, FileNotFoundError when it has none yet."""
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0) | (os.O_TRUNC if truncate else 0)
        return self.open(f"logs/{log_name}", flags, 0o644)

    def log_names(self) -> list[str]:
        """The names in `logs/` (none when there is no state yet)."""
        fd = self._dir("logs", create=False)
        return sorted(os.listdir(fd)) if fd is not None else []

    # ------------------------------------------------------------ a run's logs

    def logs_of(self, run: str | None = None, *, create: bool = False) -> int | None:
        """The checked directory of a run's logs: the current (or last) run's
        `logs/`, or `logs/past/RUN`. None when it does not exist."""
        if run is None:
            return self._dir("logs", create=create)
        past = self._dir(f"logs/{logindex.PAST}", create=False)
        if past is None or "/" in run or run in ("", ".", ".."):
            return None
        return checked_dir(run, create=False, dir_fd=past, shown=self.logs / logindex.PAST / run)

    def past_runs(self) -> list[str]:
        """The earlier runs kept, oldest first."""
        fd = self._dir(f"logs/{logindex.PAST}", create=False)
        return sorted(os.listdir(fd), key=_run_order) if fd is not None else []

    def open_in_logs(self, name: str, flags: int, mode: int = 0o600, *, run: str | None = None) -> int:
        """A file of a run's logs, opened as `open` opens any (no link followed)."""
        dir_fd = self.logs_of(run, create=bool(flags & os.O_CREAT))
        shown = self.logs / name if run is None else self.logs / logindex.PAST / run / name
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(shown))
        return open_in(dir_fd, name, flags, mode, shown=shown)

    def open_log_index(self, log_name: str, *, truncate: bool) -> int:
        """The time index of an instance's log (`logindex`), for appending
        (truncated with its log at the first start of a run). Made when the
        log's first piece is marked, not with the log: a log that never
        gets a byte has no index, and costs one file, not two."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        return self.open(f"logs/{logindex.index_of(log_name)}", flags, 0o644)

    def rotate_log(self, log_name: str, keep: int) -> int:
        """`NAME` becomes `NAME.1` (and its index, if it has one, with it),
        older files move up one, the one past `keep` is dropped; a new, empty
        `NAME` takes the name (its index comes with its first piece). Renamed
        within the checked directory, never through a link. Returns the new
        file's descriptor."""
        dir_fd = self.logs_of(None)
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(self.logs))
        for number in range(keep, 0, -1):
            older, newer = logindex.rotated(log_name, number), logindex.rotated(log_name, number - 1)
            for source, target in ((newer, older), (logindex.index_of(newer), logindex.index_of(older))):
                try:
                    os.rename(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except FileNotFoundError:
                    if source.endswith(logindex.INDEX_SUFFIX):
                        # No index moves up: an older one of that number is stale.
                        try:
                            os.unlink(target, dir_fd=dir_fd)
                        except FileNotFoundError:
                            pass
        return self.open_log(log_name, truncate=True)

    def begin_run(self, run_id: str, record: dict[str, object]) -> None:
        """A new run's logs start empty: the last run's files (everything in
        `logs/` but `past/`) move to `logs/past/ITS_RUN/`, and `run.json` names
        this run (a file that cannot be moved raises: it stays). The oldest
        past runs beyond KEEP_PAST_RUNS are deleted when the run ends
        (`prune_past_runs`): deleting them here (shutil with them) cost ~3 ms
        before the first spawn. Only beyond twice as many (runs that ended
        without it) are they deleted here too."""
        logs = self.logs_of(None, create=True)
        assert logs is not None
        leftovers = [name for name in os.listdir(logs) if name != logindex.PAST]
        if leftovers:
            past = checked_dir(logindex.PAST, create=True, dir_fd=logs, shown=self.logs / logindex.PAST)
            assert past is not None
            name = _previous_run(logs) or f"before-{run_id}"
            while True:
                try:
                    os.mkdir(name, 0o700, dir_fd=past)
                    break
                except FileExistsError:
                    name += "+"
            target = os.open(name, DIR_FLAGS, dir_fd=past)
            try:
                for entry in leftovers:
                    os.rename(entry, entry, src_dir_fd=logs, dst_dir_fd=target)
            finally:
                os.close(target)
            if len(os.listdir(past)) > 2 * logindex.KEEP_PAST_RUNS:
                _prune(past)
        import json  # (here and below: `check`, which reads this module, writes and reads no JSON)

        fd = open_in(logs, logindex.RUN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, shown=self.logs / logindex.RUN_FILE)
        try:
            os.write(fd, json.dumps({"run": run_id, **record}).encode() + b"\n")
        finally:
            os.close(fd)

    def prune_past_runs(self) -> None:
        """Delete the oldest past runs beyond KEEP_PAST_RUNS."""
        past = self._dir(f"logs/{logindex.PAST}", create=False)
        if past is not None:
            _prune(past)

    def run_record(self, run: str | None = None) -> dict[str, object] | None:
        """What `run.json` says of a run (None when it is missing or unreadable)."""
        try:
            fd = self.open_in_logs(logindex.RUN_FILE, os.O_RDONLY, run=run)
        except (OSError, StateDirError):
            return None
        import json

        try:
            record = json.loads(os.pread(fd, 64 * 1024, 0) or b"null")
        except ValueError:
            return None
        finally:
            os.close(fd)
        return record if isinstance(record, dict) else None

    def reach(self, name: str, *, create: bool, companions: tuple[str, ...] = ()) -> str | None:
        """A path for what only takes a path (sqlite): through the checked
        directory, after checking `name` and its `companions` (a database's
        journal files) are no links. None when it does not exist and not `create`."""
        fd = self._dir(None, create=create)
        if fd is None:
            return None
        exists = [check_entry(fd, entry, shown=self.root / entry) for entry in (name, *companions)]
        return fd_path(fd, name) if exists[0] or create else None

    def lock_supervisor(self, manifest: Path) -> int:
        """Take the lock of the one supervisor of this manifest and return its
        descriptor: keep it open for the supervisor's whole life (the kernel
        drops the lock with the last descriptor). Raises AlreadyRunning with
        the pid of the supervisor that holds it."""
        fd = self.open(LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            other = self.other_manifest(manifest)
            if other is not None:
                raise AlreadyRunning(another_runs(manifest, *other)) from None
            held = f"pid {pid}" if pid else f"its pid not yet in {self.root / LOCK_NAME}"
            raise AlreadyRunning(f"a supervisor is already running for {manifest} ({held}); 'procctl down' stops it") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def adopt_lock(self, value: str) -> int | None:
        """The lock `up -d` took for this supervisor and passed on as
        descriptor `value`, if it is that: the same file, locked by us. None
        when it is not (then take the lock afresh)."""
        try:
            fd = int(value)
            mine = os.fstat(fd)
        except (ValueError, OSError):
            return None
        try:
            probe = self.open(LOCK_NAME, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            there = os.fstat(probe)
        finally:
            os.close(probe)
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op
        except BlockingIOError:
            return None
        os.set_inheritable(fd, False)
        return fd

    @staticmethod
    def record_supervisor(lock_fd: int, pid: int) -> None:
        """Write the pid of the supervisor into the lock it holds."""
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{pid}\n".encode(), 0)

    def supervisor_pid(self) -> int | None:
        """The pid of the supervisor that holds this directory's lock, when
        one does — proven, not just read: the pid written in the lock is a
        live process that has the lock file itself open. None otherwise.
        Takes no lock (a check must never make a starting supervisor think
        another one runs)."""
        try:
            fd = self.open(LOCK_NAME, os.O_RDONLY)
        except (OSError, StateDirError):
            return None
        try:
            lock = os.fstat(fd)
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        finally:
            os.close(fd)
        if not text.isdigit():
            return None
        pid = int(text)
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return None
        for name in descriptors:
            try:
                held = os.stat(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if (held.st_dev, held.st_ino) == (lock.st_dev, lock.st_ino):
                return pid
        return None

    def other_manifest(self, manifest: Path) -> tuple[int, str] | None:
        """(pid, manifest) of the supervisor that runs here for another
        manifest than `manifest`, if one does. Two manifests in one directory
        share its `.procctl` (the lock, the socket, the logs): one of them
        runs at a time, and -f naming the other must not reach it."""
        record = self.run_record()
        other = record.get("manifest") if record else None
        # By name in the directory: the directory itself may have been moved
        # since (the supervisor keeps to it), and a file spelt otherwise is
        # the same file.
        if not isinstance(other, str) or Path(other).name == manifest.name or _same_file(other, manifest):
            return None
        pid = self.supervisor_pid()
        return (pid, other) if pid is not None and record is not None and record.get("pid") == pid else None

    def write_pid(self, pid: int) -> None:
        fd = self.open("supervisor.pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)

    def remove_pid(self) -> None:
        fd = self._dir(None, create=False)
        if fd is not None:
            try:
                os.unlink("supervisor.pid", dir_fd=fd)
            except FileNotFoundError:
                pass


def _prune(past_fd: int) -> None:
    """Delete the oldest runs in `logs/past/` beyond KEEP_PAST_RUNS."""
    runs = sorted(os.listdir(past_fd), key=_run_order)
    if len(runs) > logindex.KEEP_PAST_RUNS:
        import shutil  # (with bz2 and lzma: ~3 ms that status --json, which reads this module, need not pay)

        for old in runs[: len(runs) - logindex.KEEP_PAST_RUNS]:
            shutil.rmtree(old, dir_fd=past_fd)


def _previous_run(logs_fd: int) -> str | None:
    """The id the last run's `run.json` gives, when it is a safe name."""
    try:
        fd = open_in(logs_fd, logindex.RUN_FILE, os.O_RDONLY, shown=logindex.RUN_FILE)
    except (OSError, StateDirError):
        return None
    import json

    try:
        run = json.loads(os.pread(fd, 64 * 1024, 0) or b"null").get("run")
    except (ValueError, AttributeError):
        return None
    finally:
        os.close(fd)
    return run if isinstance(run, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", run) and run not in (".", "..") else None


def _run_order(name: str) -> tuple[int, str]:
    """Runs are named `EPOCH-PID`: oldest first."""
    head = name.split("-", 1)[0]
    return (int(head) if head.isdigit() else 0, name)


def _holder(lock_fd: int) -> int | None:
    """The pid written in a lock someone else holds; it may take the holder
    a moment to write it (`up -d` writes it once its supervisor is spawned)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        text = os.pread(lock_fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def another_runs(manifest: Path, pid: int, other: str) -> str:
    """What to say when `manifest`'s directory runs the supervisor of `other`."""
    return (
        f"the supervisor in {manifest.parent} (pid {pid}) runs {other}, not {manifest.name}: "
        f"a directory runs one manifest at a time (they share its .procctl); "
        f"'procctl down -f {other}' stops it, or give {manifest.name} a directory of its own"
    )


def _same_file(one: str, other: Path) -> bool:
    """Two spellings of one file (a `..`, a linked directory)."""
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False

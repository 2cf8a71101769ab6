"""Opening what lies in a directory others may write, safely: the one way
procctl reaches anything in its state directory (`engine.store`) and the
socket's fallback directory (`control.address`).

procctl often runs as root in a directory others can write. So nothing
reached here is ever reached through a symbolic link, and nothing is written
when someone else owns it:

- A private directory is opened with O_NOFOLLOW | O_DIRECTORY and checked
  with fstat: a link, a file, or a directory of another user is refused
  (StateDirError, exit 2); one of ours is made 0700, so that from then on
  nobody else can add anything to it.
- A file in it is opened relative to that directory's descriptor (openat),
  with O_NOFOLLOW, and must be a regular file; one written must also be ours
  with a single link. O_TRUNC is applied only after those checks.
- What only takes a path (sqlite's database, a Unix socket) is reached as
  /proc/self/fd/N/NAME, N being the checked directory: a directory renamed
  and replaced afterwards by someone else changes nothing.
- O_NOFOLLOW guards only the last name of a path. A process that lives on
  (the supervisor) `hold`s the directory its state directory is in, once, at
  its start: from then on that state directory is looked up by its name in
  the directory held, never by its path again, so that a component of the
  path renamed or swapped for a link later cannot send what it writes
  anywhere else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from procctl.errors import StateDirError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How a checked directory is opened: never through a link."""
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK

_checked: dict[tuple[int | None, str], tuple[int, int, int]] = {}
"""(parent's checked fd or None, path) → (fd, st_dev, st_ino) of the private
directory checked there. Kept open for the life of the process: the /proc/self/fd
paths handed out refer to them."""


_held: dict[str, int] = {}
"""Absolute path of a directory as it was named at `hold` → its descriptor,
open for the life of the process."""


def hold(directory: Path) -> None:
    """From now on, reach what is in `directory` (an absolute path) through
    a descriptor of it opened now: wherever that directory is later moved,
    and whatever then takes its path, `checked_dir` looks a directory named
    in it up in the directory it was now. Raises StateDirError."""
    key = os.fspath(directory)
    if key in _held:
        return
    try:
        _held[key] = os.open(key, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StateDirError(f"{directory}: {exc.strerror or exc}") from None


def held_at(path: str | Path) -> tuple[int, str] | None:
    """(the descriptor of the held directory `path` is in, `path`'s name in
    it); None when its directory is not held."""
    parent, _, name = os.fspath(path).rpartition("/")
    fd = _held.get(parent or "/")
    return (fd, name) if fd is not None and name else None


def where_now(fd: int) -> str:
    """Where the directory of a descriptor is now (for messages)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "(unknown)"


def _refusal(path: str | Path, dir_fd: int | None, shown: Path | str, exc: OSError | None, *, directory: bool) -> StateDirError:
    try:
        info: os.stat_result | None = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        return StateDirError(f"{shown} is a symbolic link: procctl never follows one in its state directory (remove it)")
    if info is not None and directory and not stat.S_ISDIR(info.st_mode):
        return StateDirError(f"{shown} is not a directory: procctl keeps its state in a directory of that name (move it away)")
    if info is not None and not directory and not stat.S_ISREG(info.st_mode):
        return StateDirError(f"{shown} is not a regular file: procctl refuses to use it (remove it)")
    what = (exc.strerror or str(exc)) if exc is not None else "cannot be used"
    return StateDirError(f"{shown}: {what}")


def _foreign(shown: Path | str, uid: int) -> StateDirError:
    return StateDirError(
        f"{shown} belongs to another user (uid {uid}): procctl never writes where someone else can (remove it, or run as that user)"
    )


def open_private_dir(path: str | Path, *, create: bool, dir_fd: int | None = None, shown: Path | str | None = None) -> int | None:
    """The descriptor of a directory of ours, opened without following a link
    (created 0700 if missing and `create`); None when it does not exist and
    not `create`. With `dir_fd`, `path` is a name in that directory. Its mode
    is left alone: see `make_private`. Raises StateDirError."""
    shown = shown if shown is not None else path
    if create:
        try:
            os.mkdir(path, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateDirError(f"cannot create {shown}: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise StateDirError(f"{shown} vanished while it was being created") from None
        return None
    except OSError as exc:
        raise _refusal(path, dir_fd, shown, exc, directory=True) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise _foreign(shown, info.st_uid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private(fd: int, shown: Path | str, *, scan: bool = False) -> None:
    """Make a checked directory 0700. If others could write to it (or `scan`),
    first check everything they may have left in it: no link, nothing of
    theirs, nothing but files, directories and sockets. A refusal leaves the
    mode as it was, so the next attempt checks again."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode == 0o700 and not scan:
        return
    if mode & 0o022 or scan:
        with os.scandir(fd) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                where = Path(shown) / entry.name
                if stat.S_ISLNK(info.st_mode):
                    raise StateDirError(f"{where} is a symbolic link: procctl never follows one in its state directory (remove it)")
                if info.st_uid != os.geteuid():
                    raise _foreign(where, info.st_uid)
                if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode) or stat.S_ISSOCK(info.st_mode)):
                    raise StateDirError(f"{where} is not a regular file: procctl refuses to use it (remove it)")
    os.fchmod(fd, 0o700)


def checked_dir(path: str | Path, *, create: bool, dir_fd: int | None = None, shown: Path | str | None = None) -> int | None:
    """`open_private_dir`, once per process for each directory: a later call
    only checks that the name still leads to the same directory (and checks
    afresh if not). Never closed: /proc/self/fd paths refer to it. An
    absolute path in a `hold`-held directory is looked up in that directory."""
    if dir_fd is None and (held := held_at(path)) is not None:
        shown = shown if shown is not None else path
        dir_fd, path = held
    key = (dir_fd, os.fspath(path))
    known = _checked.get(key)
    if known is not None:
        fd, dev, ino = known
        try:
            now: os.stat_result | None = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (dev, ino):
            return fd
    fd = open_private_dir(path, create=create, dir_fd=dir_fd, shown=shown)
    if fd is None:
        return None
    info = os.fstat(fd)
    _checked[key] = (fd, info.st_dev, info.st_ino)
    return fd


def open_in(dir_fd: int, name: str, flags: int, mode: int = 0o600, *, shown: Path | str) -> int:
    """Open a file in a checked directory without following a link: it must be
    a regular file, and one opened for writing must be ours with one link.
    O_TRUNC is applied after the checks. Raises StateDirError, or
    FileNotFoundError (FileExistsError) as os.open does for O_CREAT (O_EXCL)."""
    writing = flags & (os.O_WRONLY | os.O_RDWR)
    if flags & os.O_CREAT and flags & os.O_TRUNC:
        # The usual case (each new run's logs): a file made here and now is
        # a regular file of ours with one link and empty, so none of the
        # checks below has anything to find. O_EXCL never follows a link.
        try:
            return os.open(name, (flags & ~os.O_TRUNC) | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, mode, dir_fd=dir_fd)
        except OSError:
            pass  # It exists (or cannot be made): opened and checked as any other.
    try:
        fd = os.open(name, (flags & ~os.O_TRUNC) | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise _refusal(name, dir_fd, shown, exc, directory=False) from None
        raise StateDirError(f"{shown}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refusal(name, dir_fd, shown, None, directory=False)
        if writing and info.st_uid != os.geteuid():
            raise _foreign(shown, info.st_uid)
        if writing and info.st_nlink != 1:
            raise StateDirError(f"{shown} has other hard links: procctl refuses to write through them (remove it)")
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_entry(dir_fd: int, name: str, *, shown: Path | str, kind: int = stat.S_IFREG) -> bool:
    """Whether `name` exists in a checked directory, refusing it when it is a
    link, not of `kind`, or someone else's. For what can only be reached by a
    path (the database, a socket)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_IFMT(info.st_mode) != kind:
        if stat.S_ISLNK(info.st_mode):
            raise StateDirError(f"{shown} is a symbolic link: procctl never follows one in its state directory (remove it)")
        raise StateDirError(f"{shown} is not a {'socket' if kind == stat.S_IFSOCK else 'regular file'}: procctl refuses to use it (remove it)")
    if info.st_uid != os.geteuid():
        raise _foreign(shown, info.st_uid)
    return True


def fd_path(dir_fd: int, name: str) -> str:
    """A path to `name` that goes through the checked directory itself."""
    return f"/proc/self/fd/{dir_fd}/{name}"

"""Writing an export into a directory, safely in a directory others can write.

A file is overwritten only when an earlier export wrote it (its first line
says so) or with `force`; files an earlier export of the same app and format
wrote that this one no longer has are removed. Nothing is followed through a
symlink: the directory is opened with O_NOFOLLOW, each file is written to a
new temporary file and renamed over the old name, which replaces a symlink
instead of writing where it points. Every conflict is found before anything
is written.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from procctl.errors import UsageError
from procctl.export.model import HEADER


@dataclasses.dataclass(frozen=True)
class Written:
    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    """Files of an earlier export that this one no longer has."""


def write_files(directory: Path, files: Mapping[str, str], *, owner_line: str, force: bool) -> Written:
    """Write `files` into `directory` (created if missing). `owner_line`: the
    first line of what an earlier export of the same app and format wrote,
    up to the manifest name."""
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise UsageError(f"{directory} is a symlink: give the directory it points to") from None
        raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    try:
        refused = [name for name in files if not _may_replace(fd, name, force)]
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise UsageError(
                f"{directory / refused[0]}{more} exists and was not written by procctl export: use --force to replace it"
            )
        stale = [name for name in _entries(fd) if name not in files and _first_line(fd, name).startswith(owner_line)]
        for name, text in files.items():
            _replace(fd, name, text)
        for name in stale:
            os.unlink(name, dir_fd=fd)
    except OSError as exc:
        raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return Written(written=tuple(directory / name for name in files), removed=tuple(directory / name for name in stale))


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _may_replace(fd: int, name: str, force: bool) -> bool:
    info = _lstat(fd, name)
    if info is None:
        return True
    if stat.S_ISDIR(info.st_mode):
        return False
    if force:
        return True
    return stat.S_ISREG(info.st_mode) and _first_line(fd, name).startswith(HEADER)


def _entries(fd: int) -> list[str]:
    names = []
    for name in os.listdir(fd):
        info = _lstat(fd, name)
        if info is not None and stat.S_ISREG(info.st_mode):
            names.append(name)
    return names


def _first_line(fd: int, name: str) -> str:
    """The first line of a regular file, "" for anything else."""
    try:
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            return ""
        head = os.read(file_fd, 512)
    finally:
        os.close(file_fd)
    return head.split(b"\n", 1)[0].decode("utf-8", "replace")


def _replace(fd: int, name: str, text: str) -> None:
    temporary = f".{name}.{os.getpid()}.tmp"
    file_fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
    try:
        with os.fdopen(file_fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=fd)
        except OSError:
            pass
        raise

"""The files a manifest is made of (the manifest or Procfile, its env files),
read whole: regular files of a bounded size. A FIFO, a device or a socket
named as one would block the reader until someone writes (a `reload` waits
on the supervisor's loop) or never end (/dev/zero)."""

from __future__ import annotations

import os
import stat

MAX_SOURCE_BYTES = 64 * 1024 * 1024
"""A manifest of a million-item `each` list is about 15 MiB."""

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}


class NotASource(ValueError):
    """A file that is not to be read as a source: why, in a few words."""


def read_source(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file at `path`. Raises OSError as opening or
    reading does (IsADirectoryError for a directory), NotASource for
    anything else that is not a regular file or for one past the bound."""
    # O_NONBLOCK: opening a FIFO waits for a writer without it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotASource(f"it is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_SOURCE_BYTES:
                raise NotASource(f"it is larger than {MAX_SOURCE_BYTES >> 20} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

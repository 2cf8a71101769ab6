"""Shared memory regions: named, fixed-size memory the supervisor creates once
per run and hands to the processes that list it.

Each region is an anonymous memory file (`memfd_create`): nothing appears in
/dev/shm or any file system, and the memory is freed when the last holder
closes it — the supervisor and its children, who all die with it. Its size is
sealed (no grow, no shrink, no new seals), so a process that maps it whole can
never be cut short by another.

A process gets the region as an inherited descriptor, open read-write or
read-only as its manifest asks, and finds it at `/proc/self/fd/N`. A read-only
descriptor is a second opening of the region, made with O_RDONLY: mapping it
writable fails (EACCES), and so does writing through it. This guards against
mistakes, not against a hostile program of the same user, which could open
the region anew through /proc for writing.

The regions outlive the runs of the processes that use them: a restarted
reader finds what the loader wrote.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from procctl.bounds import MAX_TRANSFER_BYTES
from procctl.errors import ProcctlError, UsageError

Mode = Literal["rw", "ro"]

_SEALS = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


class ShmError(ProcctlError):
    """A region could not be created (the system refused the memory)."""


def env_name(region: str) -> str:
    """`PROCCTL_SHM_<NAME>`: where a process finds a region."""
    return "PROCCTL_SHM_" + region.upper()


class Grant(NamedTuple):
    """What one process gets for the regions it uses."""

    env: dict[str, str]
    """`PROCCTL_SHM_<NAME>` (its path), `..._SIZE` (bytes), `..._MODE` (rw, ro)."""
    fds: tuple[int, ...]
    """Descriptors to pass (the same numbers in the child)."""


class Region:
    """One region: a sealed memory file, and a read-only opening of it."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        try:
            fd = os.memfd_create(f"procctl-{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError as exc:
            raise ShmError(f"shared region {name}: cannot create it: {exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            # A new opening with O_RDONLY: its own file description, read-only.
            read_only = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(fd)
            raise ShmError(f"shared region {name}: cannot set it up: {exc.strerror or exc}") from None
        self._fds: dict[Mode, int] = {"rw": fd, "ro": read_only}
        self.inode = os.fstat(fd).st_ino
        """Identifies the region in /proc/PID/maps of the processes that map it."""

    def fd(self, mode: Mode) -> int:
        return self._fds[mode]

    @property
    def resident_bytes(self) -> int:
        """Memory the region holds now (pages written at least once)."""
        try:
            return os.fstat(self._fds["rw"]).st_blocks * 512
        except OSError:
            return 0

    def _check(self, offset: int, length: int, verb: str) -> None:
        if offset < 0 or length < 0:
            raise UsageError(f"shm {verb} {self.name}: offset and length cannot be negative")
        if offset + length > self.size:
            raise UsageError(
                f"shm {verb} {self.name}: {length} bytes at offset {offset} go past its end ({self.size} bytes)"
            )
        if length > MAX_TRANSFER_BYTES:
            raise UsageError(f"shm {verb} {self.name}: at most {MAX_TRANSFER_BYTES} bytes per request")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length, "read")
        return os.pread(self._fds["rw"], length, offset)

    def write(self, offset: int, data: bytes) -> int:
        self._check(offset, len(data), "write")
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.pwrite(self._fds["rw"], view[done:], offset + done)
        return done

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


class Regions:
    """Every region of a run, created together at its start."""

    def __init__(self, sizes: Mapping[str, int]) -> None:
        self._regions: dict[str, Region] = {}
        try:
            for name, size in sizes.items():
                self._regions[name] = Region(name, size)
        except BaseException:
            self.close()
            raise

    def add(self, sizes: Mapping[str, int]) -> None:
        """More regions, for a reload that declared them."""
        for name, size in sizes.items():
            if name not in self._regions:
                self._regions[name] = Region(name, size)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._regions.values())

    def __len__(self) -> int:
        return len(self._regions)

    def get(self, name: str) -> Region:
        region = self._regions.get(name)
        if region is None:
            from procctl.config.reading import nearest

            known = ", ".join(self._regions) or "none"
            close = nearest(name, self._regions)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise UsageError(f"unknown shared region {name!r}{hint}; regions of this run: {known}")
        return region

    def grant(self, uses: Iterable[tuple[str, Mode]]) -> Grant:
        """The environment and descriptors of a process that uses `uses`."""
        env: dict[str, str] = {}
        fds: list[int] = []
        for name, mode in uses:
            region = self.get(name)
            fd = region.fd(mode)
            key = env_name(name)
            env[key] = f"/proc/self/fd/{fd}"
            env[key + "_SIZE"] = str(region.size)
            env[key + "_MODE"] = mode
            fds.append(fd)
        return Grant(env, tuple(fds))

    def close(self) -> None:
        for region in self._regions.values():
            region.close()
        self._regions.clear()


def mapped_by(pids: Iterable[int], inodes: Mapping[int, str], proc: str = "/proc") -> dict[str, set[int]]:
    """Which of `pids` map which region now (region inode → name), from
    their /proc/PID/maps."""
    found: dict[str, set[int]] = {}
    wanted = {str(inode).encode(): name for inode, name in inodes.items()}
    for pid in pids:
        try:
            with open(f"{proc}/{pid}/maps", "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            # address perms offset dev inode path
            fields = line.split(None, 5)
            if len(fields) >= 6 and b"memfd:procctl-" in fields[5]:
                name = wanted.get(fields[4])
                if name is not None:
                    found.setdefault(name, set()).add(pid)
    return found

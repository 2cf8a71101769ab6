"""Where the control socket of a manifest's supervisor lives.

`.procctl/procctl.sock` beside the manifest, unless that path is too long for
a Unix socket (about 108 bytes on Linux); then a short path derived from the
manifest's own path under $XDG_RUNTIME_DIR, or $TMPDIR/procctl-UID/ (TMPDIR
defaults to /tmp), so that every invocation for the same manifest finds the
same socket.

Its directory is checked as `.procctl` is (engine.safeopen): never a link, ours,
0700. $XDG_RUNTIME_DIR is used only when it is such a directory already (under
sudo it may still be the invoking user's); procctl-UID is refused when
someone else made it first, or made it a link. Binding and connecting go
through the checked directory's descriptor, so a directory swapped
afterwards changes nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from procctl.engine.safeopen import check_entry, checked_dir, fd_path, make_private
from procctl.engine.store import StateDir

MAX_SOCKET_PATH = 100
"""sun_path is 108 bytes on Linux; stay clearly under it."""


def _private_runtime_dir() -> Path | None:
    """$XDG_RUNTIME_DIR when it is a real directory of ours that nobody else may enter."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not os.path.isabs(runtime):
        return None
    try:
        info = os.stat(runtime, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return None
    return Path(runtime)


def socket_path(state_dir: StateDir) -> Path:
    preferred = state_dir.socket
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    import hashlib  # only for the rare long path; the fast path skips it

    digest = hashlib.sha256(os.fsencode(state_dir.root.resolve())).hexdigest()[:16]
    shared = Path(os.environ.get("TMPDIR") or "/tmp") / f"procctl-{os.geteuid()}"
    candidate = (_private_runtime_dir() or shared) / f"procctl-{digest}.sock"
    if len(os.fsencode(candidate)) > MAX_SOCKET_PATH:
        candidate = shared / f"{digest}.sock"
    if len(os.fsencode(candidate)) > MAX_SOCKET_PATH:
        candidate = Path("/tmp") / f"procctl-{os.geteuid()}" / f"{digest}.sock"
    return candidate


def socket_location(path: Path, *, create: bool) -> tuple[int, str] | None:
    """(checked descriptor of the socket's directory, the path to bind or
    connect to through it); None when the directory does not exist and not
    `create`. A link or someone else's file at the socket's name is refused.
    Raises StateDirError."""
    fd = checked_dir(path.parent.absolute(), create=create, shown=path.parent)
    if fd is None:
        return None
    if create:
        make_private(fd, path.parent)
    check_entry(fd, path.name, shown=path, kind=stat.S_IFSOCK)
    return fd, fd_path(fd, path.name)


def supervisor_of(file: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """(control socket, manifest) a control command talks to.

    `-f FILE` names a manifest. Without it, a process that procctl runs
    reaches its own supervisor, from any working directory, through the
    socket its environment names (`PROCCTL_SOCKET`); anything else finds the
    manifest as every command does ($PROCCTL_FILE, then the current
    directory)."""
    from procctl.engine import childenv

    if file is None:
        inherited = os.environ.get(childenv.SOCKET)
        if inherited:
            return Path(inherited), Path(os.environ.get(childenv.MANIFEST) or inherited)
    from procctl.config.locate import current_directory, find_manifest
    from procctl.errors import ManifestError

    try:
        manifest = find_manifest(file)
    except ManifestError:
        # A manifest deleted (or moved) while its supervisor runs: its state
        # directory, where the manifest was, still leads to the supervisor.
        named = file if file is not None else os.environ.get("PROCCTL_FILE") or None
        where = Path(named).absolute().parent if named is not None else current_directory()
        state = StateDir(where / ".procctl")
        if state.supervisor_pid() is None:
            raise
        return socket_path(state), Path(named).absolute() if named is not None else where
    state = StateDir.beside(manifest)
    other = state.other_manifest(manifest)
    if other is not None:
        from procctl.engine.store import another_runs
        from procctl.errors import AnotherManifestRuns

        raise AnotherManifestRuns(another_runs(manifest, *other))
    return socket_path(state), manifest


def state_dir_of(socket: Path, manifest: Path) -> StateDir:
    """The state directory of the supervisor `supervisor_of` named (where
    its lock is), from the manifest (or the directory, when it is gone)."""
    return StateDir((manifest if manifest.is_dir() else manifest.parent) / ".procctl")

"""Where the control socket of a manifest's supervisor lives.

`.procctl/procctl.sock` beside the manifest, unless that path is too long for
a Unix socket (about 108 bytes on Linux); then a short path derived from the
manifest's own path under $XDG_RUNTIME_DIR, or /tmp/procctl-UID/, so that
every invocation for the same manifest finds the same socket.
"""

from __future__ import annotations

import os
from pathlib import Path

from procctl.engine.store import StateDir

MAX_SOCKET_PATH = 100
"""sun_path is 108 bytes on Linux; stay clearly under it."""


def socket_path(state_dir: StateDir) -> Path:
    preferred = state_dir.socket
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    import hashlib  # only for the rare long path; the fast path skips it

    digest = hashlib.sha256(os.fsencode(state_dir.root.resolve())).hexdigest()[:16]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path("/tmp") / f"procctl-{os.getuid()}"
    candidate = base / f"procctl-{digest}.sock"
    if len(os.fsencode(candidate)) > MAX_SOCKET_PATH:
        candidate = Path("/tmp") / f"procctl-{os.getuid()}" / f"{digest}.sock"
    return candidate


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory, private to this user (0700)."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to another user")
    os.chmod(directory, 0o700)

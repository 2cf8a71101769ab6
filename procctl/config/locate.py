"""Which manifest a command line means: -f FILE, $PROCCTL_FILE, or the one in
the current directory. Kept apart from the manifest's model so that the
control commands' fast path finds the socket without importing it."""

from __future__ import annotations

import os
from pathlib import Path

from procctl.errors import ManifestError, UsageError

DEFAULT_NAMES = ("procfile.toml", "Procfile")


def current_directory() -> Path:
    """The working directory; UsageError when it was deleted (or moved out
    of reach) after procctl's caller went into it."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise UsageError("the current directory no longer exists: cd to one that does, or name the manifest with -f /ABSOLUTE/PATH") from None


def find_manifest(file: str | os.PathLike[str] | None, cwd: Path | None = None) -> Path:
    """The manifest to use: `file`, else $PROCCTL_FILE, else procfile.toml or
    Procfile in `cwd`. Raises ManifestError when there is none."""
    named = file if file is not None else os.environ.get("PROCCTL_FILE") or None
    # (An absolute name needs no working directory: it may be gone.)
    base = cwd or (Path("/") if named is not None and os.path.isabs(named) else current_directory())
    if named is not None:
        path = (base / Path(named)).absolute()
        if not path.exists():
            raise ManifestError(f"no such manifest: {named}")
        if path.is_dir():
            raise ManifestError(f"{named} is a directory, not a manifest")
        return path
    for name in DEFAULT_NAMES:
        candidate = base / name
        if candidate.is_file():
            return candidate.absolute()
    raise ManifestError(
        f"no manifest here: looked for {' and '.join(DEFAULT_NAMES)} in {base} (write one with 'procctl init', or use -f FILE)"
    )



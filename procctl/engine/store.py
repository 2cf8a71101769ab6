"""Where a manifest's state lives: `.procctl/` beside the manifest."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class StateDir:
    root: Path
    """The `.procctl/` directory."""

    @classmethod
    def beside(cls, manifest_path: Path) -> StateDir:
        return cls(manifest_path.parent / ".procctl")

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def socket(self) -> Path:
        return self.root / "procctl.sock"

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    def log_path(self, log_name: str) -> Path:
        return self.logs / log_name

    def prepare(self) -> None:
        """Create `.procctl/` (mode 0700: it will hold the control socket) and logs/."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.logs.mkdir(exist_ok=True)


def tail_of(path: Path, lines: int, *, max_bytes: int | None = None) -> tuple[bytes, int]:
    """The last `lines` lines of a file and the offset its end is at. With
    `max_bytes`, never more than that many bytes (the end of a huge line)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if lines <= 0:
            return b"", end
        block, data, pos = 65536, b"", end
        while pos > 0 and data.count(b"\n") <= lines and (max_bytes is None or len(data) < max_bytes):
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
        kept = b"".join(data.splitlines(keepends=True)[-lines:])
        return (kept[-max_bytes:] if max_bytes is not None else kept), end

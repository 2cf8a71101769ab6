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

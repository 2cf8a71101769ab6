"""The layers point one way: cli → {control, ui, bench} → engine → config,
and cli → export → config (the exporters read the manifest and its plan, and
run nothing). The engine never imports rich or typer; the UI never imports the
process code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "procctl"

FORBIDDEN = {
    "config": ("procctl.engine", "procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer"),
    "engine": ("procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer"),
    "export": ("procctl.engine", "procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer", "subprocess"),
    "ui": ("procctl.engine.process", "procctl.engine.supervisor", "procctl.cli", "typer", "subprocess"),
    "events.py": ("procctl.engine", "procctl.ui", "rich", "typer"),
    "states.py": ("procctl.engine", "procctl.ui", "procctl.config", "procctl.events", "rich", "typer"),
    "errors.py": ("procctl.engine", "procctl.ui", "rich", "typer"),
    "units.py": ("procctl.engine", "procctl.ui", "rich", "typer"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_point_one_way() -> None:
    checked = 0
    for part, forbidden in FORBIDDEN.items():
        target = PACKAGE / part
        files = [target] if target.is_file() else sorted(target.rglob("*.py"))
        for path in files:
            checked += 1
            for name in _imports(path):
                for bad in forbidden:
                    assert not (name == bad or name.startswith(bad + ".")), f"{path.relative_to(PACKAGE)} imports {name}"
    assert checked >= 10


def test_only_cli_exits() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() in ("entry.py", "__main__.py"):
            continue
        text = path.read_text()
        assert "sys.exit(" not in text, f"{path.relative_to(PACKAGE)} calls sys.exit"

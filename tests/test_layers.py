"""The layers point one way: cli → {control, ui, bench} → engine → config,
cli → export → config (the exporters read the manifest and its plan, and
run nothing), and cli → cluster → engine (a Dask cluster's executor behind
the engine's seam, and the worker's side of it). The engine never imports
rich or typer; the UI never imports the process code; nothing but `cluster`
imports Dask, so that only a run that uses a cluster pays for it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "procctl"

DASK = ("dask", "distributed", "procctl.cluster")

FORBIDDEN = {
    "config": ("procctl.engine", "procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer", *DASK),
    "engine": ("procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer", *DASK),
    "export": ("procctl.engine", "procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "rich", "typer", "subprocess", *DASK),
    "cluster": ("procctl.ui", "procctl.cli", "procctl.control", "procctl.bench", "procctl.export", "rich", "typer"),
    "ui": ("procctl.engine.process", "procctl.engine.supervisor", "procctl.cli", "typer", "subprocess", *DASK),
    "control": DASK,
    "bench": DASK,
    "events.py": ("procctl.engine", "procctl.ui", "rich", "typer", *DASK),
    "bus.py": ("procctl.engine", "procctl.ui", "rich", "typer", *DASK),
    "records.py": ("procctl.engine", "procctl.ui", "rich", "typer", *DASK),
    "states.py": ("procctl.engine", "procctl.ui", "procctl.config", "procctl.events", "rich", "typer"),
    "errors.py": ("procctl.engine", "procctl.ui", "rich", "typer"),
    "units.py": ("procctl.engine", "procctl.ui", "rich", "typer"),
    "jsonout.py": ("procctl.engine", "procctl.ui", "procctl.cli", "rich", "typer"),
    # The control client reads it: nothing of procctl, nothing heavy.
    "bounds.py": ("procctl", "rich", "typer"),
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


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("procctl", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports: anywhere in it, in a
    function or under TYPE_CHECKING too (a cycle there is a cycle of ideas)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names)
        graph[name] = {target for target in graph[name] if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert len(graph) > 50 and graph["procctl.engine.supervisor"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""`watch`: a process restarts when its files change (as `pm2 --watch`,
nodemon and `uvicorn --reload` do).

One watch per process that has `watch`, for the whole run (a reload renews
the ones it changed). The changes come from watchfiles (inotify through the
Rust notify crate, in a thread of its own), filtered here by the process's
globs and ignore list. A burst of them (an editor's save, a checkout) is one
batch: it is acted on once none came for `debounce`. A batch restarts every
instance of the process once, says which file changed, and does not count
against `max_restarts`. An instance that had ended (crashed, say) starts
again; one stopped on request stays stopped.

watchfiles is imported when the first watch starts: a run without `watch`
never loads it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from procctl import events
from procctl.bus import Bus
from procctl.config.manifest import ProcessSpec, WatchSpec
from procctl.states import State

IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", "node_modules", ".procctl", ".venv", ".tox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".idea",
})  # fmt: skip
"""Directories never watched, wherever they are: version control, caches,
dependencies, procctl's own state."""

IGNORED_NAMES = re.compile(r"\.py[cod]$|\.sw.$|~$|^\.#|^#.*#$|^\.DS_Store$|^flycheck_|^4913$|\.tmp$")
"""Files never watched: bytecode, editors' swap, backup, lock and probe files
(vim writes `4913` to test a directory), temporary files."""

STEP_MS = 50
"""How often the watcher's thread looks for changes (and for being stopped)."""

ANNOUNCE_MS = 1000
"""How long the watcher waits for a first change before it reports that it
watches (the `watching …` notice says the watch is in force)."""

_GLOB_CHARS = re.compile(r"[*?\[]")


def _component(glob: str) -> str:
    """A regex for one path component of a glob: `*` and `?` never match `/`."""
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            # A `]` first in the class (after `[` or `[!`) is one of its characters.
            first = i + 2 if glob[i + 1 : i + 2] == "!" else i + 1
            end = glob.find("]", first + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def glob_regex(glob: str) -> re.Pattern[str]:
    """A glob with `**` (any number of directories) as a regex of a whole
    path; a path under a matching directory matches too."""
    parts = glob.split("/")
    out = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_component(part) + ("" if last else "/"))
    return re.compile("".join(out) + "(?:/.*)?")


class Matcher:
    """Which changed paths concern a process: under its watched globs, not
    under an ignored directory or name, nor its own `ignore` list. Paths are
    absolute; the globs are taken from the process's cwd."""

    def __init__(self, spec: WatchSpec, cwd: Path) -> None:
        self.cwd = cwd
        self._patterns = [os.path.normpath(os.path.join(cwd, glob)) for glob in spec.paths]
        self._watched = [glob_regex(pattern) for pattern in self._patterns]
        self._ignored_names = [re.compile(_component(glob.rstrip("/")) + "$") for glob in spec.ignore if "/" not in glob.rstrip("/")]
        self._ignored_paths = [glob_regex(os.path.normpath(os.path.join(cwd, glob))) for glob in spec.ignore if "/" in glob.rstrip("/")]

    def __call__(self, change: object, path: str) -> bool:
        """watchfiles' filter: whether this change counts."""
        parts = path.split("/")
        if any(part in IGNORED_DIRS for part in parts) or IGNORED_NAMES.search(parts[-1]):
            return False
        if any(rx.fullmatch(part) for rx in self._ignored_names for part in parts):
            return False
        if any(rx.fullmatch(path) for rx in self._ignored_paths):
            return False
        return any(rx.fullmatch(path) for rx in self._watched)

    def roots(self) -> tuple[list[Path], list[Path]]:
        """(the directories to watch, the watched paths that do not exist).
        A glob is watched from its deepest directory without a wildcard; a
        plain file from its directory (editors replace a file when saving)."""
        roots: list[Path] = []
        missing: list[Path] = []
        for pattern in self._patterns:
            base = Path(pattern)
            while _GLOB_CHARS.search(str(base)):
                base = base.parent
            if base == Path(pattern) and base.is_file():
                base = base.parent
            if not base.exists():
                missing.append(base)
            elif not any(base == root or root in base.parents for root in roots):
                roots = [root for root in roots if base not in root.parents] + [base]
        return roots, missing

    def shown(self, path: str) -> str:
        """A changed path as the user wrote it: relative to the cwd when under it."""
        relative = os.path.relpath(path, self.cwd)
        return path if relative.startswith("..") else relative


class Restartable(Protocol):
    """An instance, as a watch restarts it."""

    state: State
    retired: bool

    def restart(self, reason: str = ...) -> None: ...


class Watches:
    """The watches of a run: started, renewed by a reload, closed."""

    def __init__(self, bus: Bus, instances: Callable[[str], Sequence[Restartable]], stopping: Callable[[], bool]) -> None:
        self._bus = bus
        self._instances = instances
        self._stopping = stopping
        self._running: dict[str, tuple[tuple[WatchSpec, Path], asyncio.Task[None]]] = {}
        self._pending: dict[str, set[str]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def apply(self, specs: Iterable[ProcessSpec]) -> None:
        """Watch what these processes say (at the start, and after a reload):
        a watch that changed starts afresh, one gone ends."""
        wanted = {spec.name: (spec.watch, spec.cwd) for spec in specs if spec.watch is not None}
        for name, (key, _) in list(self._running.items()):
            if wanted.get(name) != key:
                self._end(name)
        loop = asyncio.get_running_loop()
        for name, (watch, cwd) in wanted.items():
            if name not in self._running:
                assert watch is not None
                task = loop.create_task(self._watch(name, watch, cwd), name=f"watch {name}")
                self._running[name] = ((watch, cwd), task)

    def close(self) -> None:
        for name in list(self._running):
            self._end(name)

    def _end(self, name: str) -> None:
        _, task = self._running.pop(name)
        task.cancel()
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        self._pending.pop(name, None)

    def _notice(self, process: str, message: str, level: str = "info") -> None:
        self._bus.publish(events.Notice(process, process, message=message, level=level))

    async def _watch(self, process: str, spec: WatchSpec, cwd: Path) -> None:
        match = Matcher(spec, cwd)
        roots, missing = match.roots()
        for path in missing:
            self._notice(process, f"watch: {match.shown(str(path))} does not exist: nothing is watched there", "warning")
        if not roots:
            return
        try:
            import watchfiles
        except ImportError:  # pragma: no cover - a dependency of procctl
            self._notice(process, "watch: the watchfiles package is missing: nothing is watched", "warning")
            return
        announced = False
        try:
            async for changes in watchfiles.awatch(
                *roots, watch_filter=match, step=STEP_MS, rust_timeout=ANNOUNCE_MS, yield_on_timeout=True, ignore_permission_denied=True
            ):
                if not announced:
                    announced = True
                    self._notice(process, f"watching {', '.join(spec.paths)}")
                if changes:
                    self._changed(process, {match.shown(path) for _, path in changes}, spec.debounce_s)
        except (OSError, RuntimeError) as exc:
            # The kernel's limit of inotify watches, a directory gone…
            self._notice(process, f"watch: cannot watch {', '.join(spec.paths)}: {exc}; its files are no longer watched", "warning")

    def _changed(self, process: str, paths: set[str], debounce_s: float) -> None:
        """A batch of changes: acted on once none came for `debounce_s`."""
        self._pending.setdefault(process, set()).update(paths)
        timer = self._timers.get(process)
        if timer is not None:
            timer.cancel()
        self._timers[process] = asyncio.get_running_loop().call_later(debounce_s, self._fire, process)

    def _fire(self, process: str) -> None:
        self._timers.pop(process, None)
        paths = sorted(self._pending.pop(process, ()))
        if not paths or self._stopping():
            return
        shown = paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"
        reason = f"watch: {shown} changed"
        again = []
        for runner in self._instances(process):
            if runner.retired or runner.state in (State.STOPPED, State.SKIPPED):
                continue  # Stopped on request: a change does not override that.
            if runner.state.final:
                again.append(runner)
            runner.restart(reason)
        if again:
            self._notice(process, f"{reason}: starting it again")

"""What a watch counts as a change, where it watches, and that batches of
changes coming one after another are one restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from procctl import events
from procctl.bus import Bus
from procctl.config.manifest import WatchSpec
from procctl.engine.watcher import Matcher, Watches
from procctl.states import State


def _matcher(tmp_path: Path, *paths: str, ignore: tuple[str, ...] = ()) -> Matcher:
    return Matcher(WatchSpec(paths=paths, ignore=ignore), tmp_path)


def test_globs_with_double_stars_and_plain_paths(tmp_path: Path) -> None:
    match = _matcher(tmp_path, "src/**/*.py", "config.toml", "templates")
    counts = lambda rel: match(None, str(tmp_path / rel))  # noqa: E731
    assert counts("src/a.py") and counts("src/deep/er/b.py")
    assert not counts("src/a.pyx") and not counts("srcx/a.py") and not counts("a.py")
    assert counts("config.toml") and not counts("config.toml.bak") and not counts("sub/config.toml")
    assert counts("templates/index.html") and counts("templates/a/b.html") and not counts("templatesx/a")


def test_character_classes_and_question_marks(tmp_path: Path) -> None:
    match = _matcher(tmp_path, "v[0-9]/?.txt", "x[!a].c")
    assert match(None, str(tmp_path / "v1/a.txt")) and not match(None, str(tmp_path / "vx/a.txt"))
    assert not match(None, str(tmp_path / "v1/ab.txt")) and not match(None, str(tmp_path / "v1/a/b.txt"))
    assert match(None, str(tmp_path / "xb.c")) and not match(None, str(tmp_path / "xa.c"))


def test_default_and_own_ignores(tmp_path: Path) -> None:
    match = _matcher(tmp_path, "**", ignore=("*.log", "build/out"))
    counts = lambda rel: match(None, str(tmp_path / rel))  # noqa: E731
    assert counts("app.py") and counts("build/x.o")
    for ignored in (".git/HEAD", "node_modules/a/b.js", "__pycache__/a.pyc", ".procctl/logs/web.log", "a/.venv/x.py",
                    "src/.a.py.swp", "src/a.py~", "src/.#a.py", "src/4913", "x.log", "deep/er/y.log", "build/out/z.o"):  # fmt: skip
        assert not counts(ignored), ignored


def test_roots_are_the_directories_before_the_wildcards(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    (tmp_path / "config.toml").write_text("")
    match = _matcher(tmp_path, "src/pkg/**/*.py", "lib/*.py", "gone/*.py")
    roots, missing = match.roots()
    assert sorted(roots) == [tmp_path / "lib", tmp_path / "src" / "pkg"]
    assert missing == [tmp_path / "gone"]
    # A root under another is watched through it; a file through its directory.
    assert _matcher(tmp_path, "src/pkg/*.py", "src/**/*.py").roots()[0] == [tmp_path / "src"]
    assert _matcher(tmp_path, "lib/*.py", "config.toml").roots()[0] == [tmp_path]
    assert match.shown(str(tmp_path / "src" / "a.py")) == "src/a.py"


class _Runner:
    def __init__(self, state: State = State.RUNNING) -> None:
        self.state = state
        self.retired = False
        self.restarts: list[str] = []

    def restart(self, reason: str = "") -> None:
        self.restarts.append(reason)


def test_batches_within_the_debounce_are_one_restart_of_each_instance() -> None:
    """Three batches, each within the debounce of the last: one restart of
    each instance that runs or had ended, none of one stopped on request;
    the restart names the files."""
    runners = [_Runner(), _Runner(State.FAILED), _Runner(State.STOPPED)]
    bus = Bus()
    notices: list[events.Event] = []
    bus.subscribe(notices.append)

    async def scenario() -> None:
        watches = Watches(bus, lambda process: runners if process == "web" else [], lambda: False)
        for paths in ({"src/a.py"}, {"src/b.py"}, {"src/a.py"}):
            watches._changed("web", paths, 0.05)
        while watches._timers:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert runners[0].restarts == ["watch: src/a.py and 1 more changed"]
    assert runners[1].restarts == ["watch: src/a.py and 1 more changed"]
    assert runners[2].restarts == []
    assert [getattr(event, "message", "") for event in notices] == ["watch: src/a.py and 1 more changed: starting it again"]


def test_a_reload_renews_a_changed_watch_and_ends_a_removed_one(tmp_path: Path) -> None:
    from procctl.config.manifest import ProcessSpec

    def spec(*paths: str) -> ProcessSpec:
        return ProcessSpec(name="web", cmd="true", cwd=tmp_path, env={}, depends_on={}, watch=WatchSpec(paths=paths))

    async def scenario() -> None:
        watches = Watches(Bus(), lambda process: [], lambda: False)
        watches.apply([spec("*.py")])
        first = watches._running["web"][1]
        watches.apply([spec("*.py")])
        assert watches._running["web"][1] is first
        watches.apply([spec("*.py", "*.toml")])
        second = watches._running["web"][1]
        assert second is not first
        watches.apply([])
        assert watches._running == {}
        await asyncio.gather(first, second, return_exceptions=True)
        assert first.cancelled() and second.cancelled()

    asyncio.run(scenario())

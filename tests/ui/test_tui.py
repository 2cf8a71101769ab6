"""The interactive view, driven by Textual's own pilot (`App.run_test`):
keys, mouse, the log screen, the merged output, against a face that records
the verbs it is asked for and feeds recorded events (the seam between the
view and a supervisor, ui/face.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from rich.color import Color
from textual.pilot import Pilot

from procctl import events
from procctl.bus import EventQueue
from procctl.engine.store import StateDir
from procctl.errors import UsageError
from procctl.states import State
from procctl.ui.live_model import InstanceInfo
from procctl.ui.scrollback import LEVEL_STYLES, LIMIT, Scrollback
from procctl.ui.tui.app import LiveApp
from procctl.ui.tui.lines import LinesView
from procctl.ui.tui.screens import Confirm, HelpScreen, LogScreen, Prompt
from procctl.ui.tui.table import InstanceTable

OTHER_PID = 4242


class FakeFace:
    """A supervisor as the view sees it: verbs are recorded and answered."""

    def __init__(self, instances: Sequence[InstanceInfo], *, attached: bool = False, answers: dict[str, Any] | None = None) -> None:
        self.attached = attached
        self.queue = EventQueue(max_output_events=512)
        self.instances = list(instances)
        self.seed: list[events.Event] = []
        self.backlog: list[events.Output] = []
        self.max_parallel = 4
        self.client_pid = os.getpid()
        self.ended = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.left = 0
        self.answers = answers or {}

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        self.calls.append((verb, args))
        answer = self.answers.get(verb, {})
        if isinstance(answer, Exception):
            raise answer
        return answer

    def leave(self) -> None:
        self.left += 1

    def publish(self, *batch: events.Event) -> None:
        for event in batch:
            self.queue(event)


def _web(n: int = 3, log_dir: Path | None = None) -> list[InstanceInfo]:
    return [InstanceInfo(f"web.{i}", "web", str(log_dir / f"web.{i}.log") if log_dir else "") for i in range(1, n + 1)]


def _running(face: FakeFace, *names: str) -> None:
    for number, name in enumerate(names):
        process = name.split(".")[0]
        face.publish(events.StateChanged(process, name, state=State.RUNNING), events.Started(process, name, pid=1000 + number))


def _screen(app: LiveApp) -> str:
    """What is on the (headless) screen, as text."""
    return "\n".join("".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips())


def drive(face: FakeFace, scenario: Callable[[LiveApp, Pilot[int]], Awaitable[None]], size: tuple[int, int] = (120, 40)) -> LiveApp:
    app = LiveApp(face)

    async def main() -> None:
        async with app.run_test(size=size, notifications=True) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def _settle(pilot: Pilot[int], app: LiveApp) -> None:
    """Let the view take in what was published (it pulls FPS times a second)."""
    app.pull()
    await pilot.pause()


def test_keys_move_the_selection_and_the_footer_and_help_show_the_keys() -> None:
    face = FakeFace(_web(30))
    _running(face, *(f"web.{i}" for i in range(1, 31)))

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        table = app.query_one(InstanceTable)
        assert table.selected is not None and table.selected.name == "web.1"
        await pilot.press("down", "j", "j")
        assert table.selected.name == "web.4"
        await pilot.press("k", "up")
        assert table.selected.name == "web.2"
        await pilot.press("end")
        assert table.selected.name == "web.30"
        await pilot.press("home")
        assert table.selected.name == "web.1"
        await pilot.press("pagedown")
        assert table.selected.name not in ("web.1", "web.2")
        screen = _screen(app)
        footer = screen.splitlines()[-1]
        for label in ("move", "log", "restart", "stop", "pause", "scale", "signal", "filter", "help", "quit"):
            assert label in footer
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = _screen(app)
        assert "send a signal" in help_text and "timestamps on or off" in help_text and "stop everything" in help_text
        await pilot.press("x")
        assert not isinstance(app.screen, HelpScreen)

    drive(face, scenario)


def test_every_action_is_a_control_verb_and_what_cannot_be_undone_asks_first() -> None:
    face = FakeFace(_web(3), answers={"kill": {"signalled": ["web.2"], "signal": "SIGHUP"}})
    _running(face, "web.1", "web.2", "web.3")

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        # Restarting a running instance ends its process: it asks.
        await pilot.press("j", "r")
        assert isinstance(app.screen, Confirm) and face.calls == []
        await pilot.press("n")
        assert face.calls == [] and not isinstance(app.screen, Confirm)
        await pilot.press("r", "y")
        await pilot.pause()
        assert face.calls[-1] == ("restart", {"names": ["web.2"]})
        await pilot.press("p")
        assert face.calls[-1] == ("pause", {"names": ["web.2"]})
        face.publish(events.StateChanged("web", "web.2", state=State.PAUSED))
        await _settle(pilot, app)
        await pilot.press("p")
        assert face.calls[-1] == ("resume", {"names": ["web.2"]})
        count = len(face.calls)
        # Stop asks; "n" leaves it running.
        await pilot.press("s")
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        assert len(face.calls) == count and not isinstance(app.screen, Confirm)
        # Any other key is a no too, and does nothing else.
        await pilot.press("s", "r")
        assert len(face.calls) == count and not isinstance(app.screen, Confirm)
        await pilot.press("s")
        await pilot.press("y")
        await pilot.pause()
        assert face.calls[-1] == ("kill", {"names": ["web.2"]})
        # Scaling up does not ask; down does.
        await pilot.press("plus")
        assert face.calls[-1] == ("scale", {"process": "web", "replicas": 4})
        await pilot.press("minus")
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await pilot.pause()
        assert face.calls[-1] == ("scale", {"process": "web", "replicas": 2})
        # A signal is asked for, TERM by default; what is typed shows.
        await pilot.press("K")
        assert isinstance(app.screen, Prompt)
        await pilot.press(*"WINCH")
        assert "WINCH" in _screen(app)
        await pilot.press("enter")
        await pilot.pause()
        assert face.calls[-1] == ("kill", {"names": ["web.2"], "signal": "WINCH"})
        await pilot.press("K", "enter")
        await pilot.pause()
        assert face.calls[-1] == ("kill", {"names": ["web.2"], "signal": "TERM"})
        count = len(face.calls)
        await pilot.press("K", "escape")
        await pilot.pause()
        assert len(face.calls) == count
        # An ended instance starts again at once, by s or r.
        face.publish(events.StateChanged("web", "web.2", state=State.STOPPED))
        await _settle(pilot, app)
        await pilot.press("s")
        assert face.calls[-1] == ("start", {"names": ["web.2"]})
        await pilot.press("r")
        assert face.calls[-1] == ("restart", {"names": ["web.2"]}) and not isinstance(app.screen, Confirm)

    drive(face, scenario)


def test_a_refused_verb_is_shown_not_raised() -> None:
    face = FakeFace(_web(1), answers={"scale": UsageError("thumb runs one job per `each` item; it cannot be scaled")})
    _running(face, "web.1")

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        await pilot.press("plus")
        await pilot.pause()
        assert any("cannot be scaled" in str(note.message) for note in app._notifications)

    drive(face, scenario)


def test_q_and_ctrl_c_leave_through_the_face() -> None:
    face = FakeFace(_web(1))

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        # In `run`, q stops every process: it asks; n keeps them running.
        await pilot.press("q")
        assert isinstance(app.screen, Confirm) and "Stop everything?" in _screen(app)
        await pilot.press("n")
        assert face.left == 0
        await pilot.press("q", "y")
        await pilot.pause()
        assert face.left == 1
        # In `run` the view stays up while everything stops, and says so.
        assert "Ctrl-C again forces" in _screen(app)
        # Ctrl-C does not ask, as outside the view; q again asks to force.
        await pilot.press("ctrl+c")
        assert face.left == 2
        await pilot.press("q")
        assert isinstance(app.screen, Confirm) and "Force the stop?" in _screen(app)
        await pilot.press("y")
        await pilot.pause()
        assert face.left == 3

    drive(face, scenario)
    attached = FakeFace(_web(1), attached=True)

    async def leave(app: LiveApp, pilot: Pilot[int]) -> None:
        # Leaving `top` stops nothing: no question.
        await pilot.press("q")
        await pilot.pause()
        assert app._exit and attached.left == 1

    drive(attached, leave)


def test_the_filter_shows_matching_names_or_states() -> None:
    face = FakeFace([*_web(3), InstanceInfo("db", "db")])
    _running(face, "web.1", "web.2", "web.3", "db")
    face.publish(events.StateChanged("web", "web.3", state=State.FAILED))

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        table = app.query_one(InstanceTable)
        await pilot.press("slash", *"fail")
        assert [row.name for row in table.shown] == ["web.3"]
        await pilot.press("enter")
        assert table.selected is not None and table.selected.name == "web.3"
        await pilot.press("escape")
        assert len(table.shown) == 4
        await pilot.press("slash", "d", "b", "enter")
        assert [row.name for row in table.shown] == ["db"]

    drive(face, scenario)


def test_a_click_selects_and_the_wheel_scrolls_the_output() -> None:
    face = FakeFace(_web(5))
    _running(face, *(f"web.{i}" for i in range(1, 6)))
    face.publish(events.Output("web", "web.1", stream="stdout", text="".join(f"line {i}\n" for i in range(300))))

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        table = app.query_one(InstanceTable)
        await pilot.click(InstanceTable, offset=(2, 3))
        assert table.selected is not None and table.selected.name == "web.4"
        output = app.query_one("#output", LinesView)
        assert output.follow and output.scroll_y == output.max_scroll_y > 0
        await pilot.mouse_down(output)  # focus it, as a click does
        for _ in range(3):
            output.post_message(_wheel_up(output))
        await pilot.pause()
        assert output.scroll_y < output.max_scroll_y and not output.follow
        # New lines do not move a reader who scrolled up...
        before = output.scroll_y
        face.publish(events.Output("web", "web.1", stream="stdout", text="more\n"))
        await _settle(pilot, app)
        assert output.scroll_y == before
        # ...and End follows again.
        output.focus()
        await pilot.press("end")
        assert output.follow and output.scroll_y == output.max_scroll_y

    drive(face, scenario)


def _wheel_up(widget: LinesView) -> Any:
    from textual.events import MouseScrollUp

    return MouseScrollUp(widget, 1, 1, 0, 0, 0, False, False, False, screen_x=1, screen_y=1)


def test_the_output_keeps_colours_own_events_and_a_bounded_scrollback() -> None:
    face = FakeFace(_web(2))
    _running(face, "web.1", "web.2")
    face.publish(
        events.Output("web", "web.1", stream="stdout", text="\x1b[31mred alert\x1b[0m and \x1b[1mbold\x1b[0m\x07\n"),
        events.Requested("web", "web", verb="scale", detail="scaled to 3", client_pid=OTHER_PID),
        events.Requested("web.2", "web.2", verb="pause", detail="paused", client_pid=os.getpid()),
        events.Restarting("web", "web.2", attempt=1, delay_s=1.0),
    )

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        output = app.query_one("#output", LinesView)
        text = _screen(app)
        assert "red alert and bold" in text and "\x07" not in text
        assert f"web: scaled to 3 (from another terminal, pid {OTHER_PID})" in text
        assert "web.2: paused\n" in text.replace(" ", "").replace("│", "") or "web.2: paused " in text
        assert "web.2 restarting in 1s (restart 1)" in text
        # A line longer than the pane is wrapped under its source, in full.
        long_line = "begin-" + "z" * 300 + "-finish"
        face.publish(events.Output("web", "web.1", stream="stdout", text=long_line + "\n"))
        await _settle(pilot, app)
        pane = _screen(app).split("output ·", 1)[1].splitlines()[1:]
        rows = [line for line in pane if "z" in line]
        assert len(rows) >= 3 and "".join(line.split("│")[-1].strip() for line in rows) == long_line
        # The child's red went through rich's ANSI parser onto the screen.
        strips = [output.render_line(y) for y in range(output.size.height)]
        red = [seg for strip in strips for seg in strip if seg.text.startswith("red alert")]
        assert red and red[0].style is not None and red[0].style.color is not None and red[0].style.color.number == Color.parse("red").number
        scaled = [seg for strip in strips for seg in strip if "scaled to 3" in seg.text]
        assert scaled[0].style is not None and scaled[0].style.color is not None and scaled[0].style.color.number == Color.parse(LEVEL_STYLES["request"].split()[-1]).number
        # Timestamps on and off.
        await pilot.press("t")
        assert app.timestamps and any(line[:2].isdigit() and line[2] == ":" for line in _screen(app).splitlines())
        # At most LIMIT lines are kept: the oldest go.
        face.publish(events.Output("web", "web.2", stream="stdout", text="".join(f"flood {i}\n" for i in range(LIMIT + 2000))))
        await _settle(pilot, app)
        assert len(app.scrollback) == LIMIT
        assert app.scrollback.entries[-1].raw == f"flood {LIMIT + 1999}"
        assert app.scrollback.entries[0].raw == "flood 2000"

    drive(face, scenario)


def test_what_was_written_before_the_view_opened_shows_first() -> None:
    """`top` on a supervisor that has run a while: the lines its instances
    wrote before (the face's backlog) come first, then the live ones."""
    face = FakeFace(_web(2), attached=True)
    face.backlog = [
        events.Output("web", "web.1", stream="stdout", text="earlier one\n", ts=1000.0),
        events.Output("web", "web.2", stream="stdout", text="earlier two\n", ts=1001.0),
    ]
    _running(face, "web.1", "web.2")
    face.publish(events.Output("web", "web.1", stream="stdout", text="live one\n"))

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        assert [entry.raw for entry in app.scrollback.entries if entry.instance != "procctl"] == ["earlier one", "earlier two", "live one"]
        assert app.model.rows["web.2"].last_line == "earlier two"
        assert "earlier two" in _screen(app)

    drive(face, scenario)


def test_skipped_output_is_counted_and_pointed_to_the_log() -> None:
    face = FakeFace(_web(1))
    _running(face, "web.1")

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        for i in range(700):  # more Output events than the view's queue holds
            face.publish(events.Output("web", "web.1", stream="stdout", text=f"x {i}\n"))
        await _settle(pilot, app)
        lines = [entry.raw for entry in app.scrollback.entries]
        # Where the lines are missing, what is missing and where it is.
        note = lines.index("188 lines of web.1 skipped — see logs of web.1")
        assert lines[note + 1:] == [f"x {i}" for i in range(188, 700)]
        assert "x 699" in _screen(app)

    drive(face, scenario)


def _log(tmp_path: Path, name: str, lines: list[str]) -> Path:
    state = StateDir(tmp_path / ".procctl")
    state.prepare()
    path = state.log_path(name)
    path.write_text("".join(line + "\n" for line in lines))
    return state.logs


def test_enter_opens_the_log_full_screen_with_search_follow_and_wrap(tmp_path: Path) -> None:
    long_line = "start-of-a-long-line " + "·" * 300 + " end-of-the-long-line"
    logs = _log(tmp_path, "web.1.log", [f"old line {i}" for i in range(200)] + [long_line, "needle one", "between", "needle two"])
    face = FakeFace(_web(2, logs))
    _running(face, "web.1", "web.2")

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, LogScreen) and screen.instance == "web.1"
        view = screen.view
        assert len(screen.scrollback) == 204 and view.follow
        text = _screen(app)
        # The long line is wrapped, in full.
        joined = "".join(line.strip() for line in text.splitlines())
        assert long_line.replace(" ", "") in joined.replace(" ", "")
        # Live lines of this instance arrive; others' do not.
        face.publish(events.Output("web", "web.1", stream="stdout", text="fresh line\n"),
                     events.Output("web", "web.2", stream="stdout", text="not mine\n"))
        await _settle(pilot, app)
        assert screen.scrollback.entries[-1].raw == "fresh line" and len(screen.scrollback) == 205
        # Search: / then n and N.
        await pilot.press("slash", *"needle", "enter")
        first = view.current
        assert first is not None and screen.scrollback[first].raw.startswith("needle")
        await pilot.press("n")
        assert view.current is not None and view.current != first and screen.scrollback[view.current].raw.startswith("needle")
        await pilot.press("N")
        assert view.current == first
        assert not view.follow
        # Scrolled up: new lines do not move the view; End follows again.
        await pilot.press("home")
        top = view.scroll_y
        face.publish(events.Output("web", "web.1", stream="stdout", text="another\n"))
        await _settle(pilot, app)
        assert view.scroll_y == top and not view.follow
        await pilot.press("end")
        assert view.follow and view.scroll_y == view.max_scroll_y
        # Without wrapping the long line is one row, scrolled sideways.
        rows_wrapped = view.virtual_size.height
        await pilot.press("w")
        await pilot.pause()
        assert view.virtual_size.height < rows_wrapped and view.virtual_size.width > 300
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)

    drive(face, scenario, size=(100, 30))


def test_a_log_screen_without_its_lines_takes_refreshes_quietly() -> None:
    """The app's refresh and an instance's new lines reach every log screen
    it holds, also one whose widgets are not there: not yet composed, or
    being taken down just after Esc. Such a screen lets them pass (its lines
    are added when it is shown); it does not raise out of the view."""
    screen = LogScreen("web.1", "web", Scrollback(LIMIT), source="logs of web.1", timestamps=False)
    screen.update_title()
    screen.lines_added()
    screen.set_timestamps(True)

    face = FakeFace(_web(1))
    _running(face, "web.1")

    async def scenario(app: LiveApp, pilot: Pilot[int]) -> None:
        await _settle(pilot, app)
        await pilot.press("enter")
        shown = app.screen
        assert isinstance(shown, LogScreen)
        await pilot.press("escape")
        # Popped: its widgets are gone; a late refresh must not break the view.
        shown.update_title()
        shown.lines_added()
        face.publish(events.Output("web", "web.1", stream="stdout", text="after the log closed\n"))
        await _settle(pilot, app)
        assert not isinstance(app.screen, LogScreen)
        assert "after the log closed" in _screen(app)

    drive(face, scenario)

"""The live view's frames, drawn by rich into a recording console."""

from __future__ import annotations

import io

from rich.console import Console

from procctl import events
from procctl.states import State
from procctl.ui.live import InstanceInfo, LiveModel, Renderer

CLOCK = 1_000.0


def _model(n: int = 3, *, max_parallel: int = 2, each: bool = False) -> LiveModel:
    infos = [InstanceInfo(f"job[{i}]" if each else f"web.{i}", "job" if each else "web", each=each, pooled=each) for i in range(1, n + 1)]
    return LiveModel(infos, max_parallel=max_parallel, clock=lambda: CLOCK)


def _text(model: LiveModel, width: int = 160, height: int = 40, tail: int | None = None) -> str:
    console = Console(record=True, width=width, height=height, color_system=None, file=io.StringIO())
    console.print(Renderer(model, tail=tail, get_time=lambda: CLOCK).render(width, height))
    return console.export_text()


def _run(model: LiveModel, instance: str, process: str, pid: int) -> None:
    model.fold([
        events.StateChanged(process, instance, state=State.RUNNING, reason="", ts=CLOCK - 5),
        events.Started(process, instance, pid=pid, ts=CLOCK - 5),
    ])


def test_rows_show_state_pid_metrics_and_last_line() -> None:
    model = _model()
    _run(model, "web.1", "web", 4242)
    model.fold([
        events.Output("web", "web.1", stream="stdout", text="listening on 8000\n"),
        events.Sample("web", "web.1", pid=4242, cpu_percent=37.0, cpu_time_s=1.5, rss_bytes=50 << 20, peak_rss_bytes=60 << 20,
                      read_bytes=0, write_bytes=4096, threads=3, children=1),
        events.StateChanged("web", "web.2", state=State.FAILED, reason="exit 3"),
        events.Exited("web", "web.2", code=3, signal=None, duration_s=1.2, status=State.FAILED),
    ])
    text = _text(model)
    header = next(line for line in text.splitlines() if "name" in line and "state" in line)
    for column in ("pid", "uptime", "rst", "exit", "cpu", "rss", "read", "write", "last line"):
        assert column in header
    row1 = next(line for line in text.splitlines() if line.startswith("web.1"))
    assert "running" in row1 and "4242" in row1 and "37%" in row1 and "50.0MiB" in row1 and "listening on 8000" in row1
    row2 = next(line for line in text.splitlines() if line.startswith("web.2"))
    assert "failed" in row2 and " 3 " in row2
    row3 = next(line for line in text.splitlines() if line.startswith("web.3"))
    assert "pending" in row3
    # Services hold no pool slot: the pool of 2 is empty.
    assert "running 1  pool 0/2" in text and "failed 1" in text
    # The merged tail below the table has the line too.
    assert any(line.startswith("web.1") and "│ listening on 8000" in line for line in text.splitlines())


def test_a_narrow_terminal_drops_columns_but_keeps_the_row_on_one_line() -> None:
    model = _model(1)
    _run(model, "web.1", "web", 7)
    model.fold([events.Output("web", "web.1", stream="stdout", text="x" * 500 + "\n")])
    text = _text(model, width=60)
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines)
    row = next(line for line in lines if line.startswith("web.1"))
    assert "running" in row and row.rstrip().endswith("…")


def test_sparklines_follow_the_samples() -> None:
    model = _model(1)
    _run(model, "web.1", "web", 7)
    for cpu in (0.0, 50.0, 100.0):
        model.fold([events.Sample("web", "web.1", pid=7, cpu_percent=cpu, cpu_time_s=1.0, rss_bytes=1 << 20, peak_rss_bytes=1 << 20,
                                  read_bytes=None, write_bytes=None, threads=1, children=0)])
    row = next(line for line in _text(model).splitlines() if line.startswith("web.1"))
    assert "▁▅█" in row


def test_many_rows_show_the_interesting_first_and_count_the_hidden() -> None:
    model = _model(1000, max_parallel=8)
    for i in range(1, 9):
        _run(model, f"web.{i}", "web", 1000 + i)
    model.fold([
        events.StateChanged("web", "web.777", state=State.FAILED, reason="exit 1"),
        events.Exited("web", "web.777", code=1, signal=None, duration_s=0.5, status=State.FAILED),
    ])
    text = _text(model, height=30)
    lines = text.splitlines()
    assert len(lines) <= 30
    shown = [line for line in lines if line.startswith("web.")]
    assert shown[0].startswith("web.777")
    hidden = next(line for line in lines if "more hidden" in line)
    assert f"{1000 - len(shown):,} more hidden" in hidden


def test_each_jobs_get_a_progress_bar_and_the_auto_pool_its_size() -> None:
    model = _model(20, max_parallel=4, each=True)
    for i in range(1, 6):
        model.fold([
            events.StateChanged("job", f"job[{i}]", state=State.EXITED, reason=""),
            events.Exited("job", f"job[{i}]", code=0, signal=None, duration_s=0.1, status=State.EXITED),
        ])
    model.fold([events.PoolSample("pool", "pool", pool_size=3, pool_cap=8, auto=True, running=0, queued=15)])
    text = _text(model)
    assert "5/20" in text and "ETA" in text
    assert "running 0  pool 0/3 (auto, up to 8)" in text
    assert "done 5" in text


def test_a_childs_escape_sequences_are_not_drawn() -> None:
    model = _model(1)
    _run(model, "web.1", "web", 7)
    model.fold([events.Output("web", "web.1", stream="stdout", text="\x1b[2J\x1b[31mred\x1b[0m\x07 done\n")])
    text = _text(model)
    assert "\x1b" not in text and "red done" in text


def test_a_status_message_stands_for_the_last_line_and_regions_show_once_in_the_header() -> None:
    """1. web.1 reports STATUS= and writes a line after it; web.2 gets a
    message from web.1. 2. web.1's row shows its status text, not its last
    line; the tail names the message's sender; the header shows the shared
    region once with what it holds. 3. A new run of web.1 starts without the
    old status."""
    model = _model(2)
    _run(model, "web.1", "web", 4242)
    _run(model, "web.2", "web", 4243)
    model.fold([
        events.StatusMessage("web", "web.1", text="serving 8 clients"),
        events.Output("web", "web.1", stream="stdout", text="GET /health\n"),
        events.Message("web", "web.2", text="job 42", sender="web.1"),
        events.RegionSample("shared", "table", size_bytes=64 << 20, resident_bytes=16 << 20),
    ])
    text = _text(model)
    row1 = next(line for line in text.splitlines() if line.startswith("web.1"))
    assert "serving 8 clients" in row1 and "GET /health" not in row1
    assert "shared table 16.0MiB/64.0MiB" in text.splitlines()[0]
    assert text.count("table 16.0MiB") == 1
    assert any("web.2 ← web.1: job 42" in line for line in text.splitlines())
    _run(model, "web.1", "web", 5000)
    assert "serving 8 clients" not in next(line for line in _text(model).splitlines() if line.startswith("web.1"))

"""The events' JSON records (docs/events.md), both ways, and a subscriber's
bounded backlog (control/subscription.py)."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import signal
import time

import pytest

from procctl import events
from procctl.control.subscription import Backlog
from procctl.records import event_records, from_record
from procctl.states import State


ALL_EVENTS: list[events.Event] = [
    events.Queued("web", "web.1", ts=1.5),
    events.Started("web", "web.1", pid=42, attempt=2, ts=1.5),
    events.Ready("web", "web.1", probe="tcp", ts=1.5),
    events.Output("web", "web.1", stream="stdout", text="hello\n", ts=1.5),
    events.Exited("web", "web.1", status=State.KILLED, code=None, signal=int(signal.SIGTERM), duration_s=2.25, ts=1.5),
    events.StateChanged("web", "web.1", state=State.BACKOFF, reason="restart 1 in 1s", ts=1.5),
    events.Restarting("web", "web.1", attempt=1, delay_s=1.0, ts=1.5),
    events.Restarting("web", "web.1", attempt=2, delay_s=2.0, reason="watchdog missed: no WATCHDOG=1 within 10s", ts=1.5),
    events.Message("worker", "worker", text="job 42", sender="boss", ts=1.5),
    events.Message("worker", "worker", text="from a terminal", sender=None, ts=1.5),
    events.StatusMessage("db", "db", text="accepting connections", ts=1.5),
    events.RegionSample("shared", "table", size_bytes=4096, resident_bytes=1024, ts=1.5),
    events.Skipped("web", "web.1", why="dependency db failed", ts=1.5),
    events.GaveUp("web", "web.1", restarts=5, within_s=12.25, why="failed 1", ts=1.5),
    events.LimitExceeded("web", "web.1", limit="memory", value=10.0, maximum=5.0, action="kill", mechanism="watchdog", ts=1.5),
    events.Paused("web", "web.1", ts=1.5),
    events.Resumed("web", "web.1", ts=1.5),
    events.Notice("web", "web.1", message="probe failed", level="error", ts=1.5),
    events.Requested("web", "web", verb="scale", detail="scaled to 3", client_pid=77, ts=1.5),
    events.Sample("web", "web.1", pid=42, cpu_percent=3.5, cpu_time_s=1.25, rss_bytes=1024, peak_rss_bytes=2048, read_bytes=None,
                  write_bytes=5, threads=2, children=1, final=True, ts=1.5),
    events.PoolSample("pool", "pool", pool_size=2, pool_cap=4, auto=True, running=1, queued=3, ts=1.5),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda event: type(event).__name__)
def test_every_event_comes_back_from_its_record(event: events.Event) -> None:
    (record,) = list(event_records(event))
    back = from_record(json.loads(json.dumps(record)))
    assert back == event
    assert type(back) is type(event)
    assert {field: getattr(back, field) for field in back.fields} == {field: getattr(event, field) for field in event.fields}


def test_an_unknown_kind_is_none_and_a_broken_record_raises() -> None:
    assert from_record({"event": "teleported", "name": "a", "instance": "a", "ts": 1}) is None
    with pytest.raises((KeyError, TypeError)):
        from_record({"event": "started", "name": "a", "instance": "a", "ts": 1})


def test_a_backlog_bounds_the_characters_of_output_it_holds() -> None:
    """A flooding child's events are up to 256 KiB each: a stuck client's
    backlog drops the oldest past `output_chars` too, and says how many lines."""

    async def main() -> None:
        backlog = Backlog(output_events=100, output_chars=30)
        for i in range(6):
            backlog(events.Output("web", "web.1", stream="stdout", text=f"line {i}\nmore\n"))  # 12 characters each
        records = backlog.take()
        assert records[0]["event"] == "lagged" and records[0]["lines"] == {"web.1": 8}
        assert [r["line"] for r in records if r["event"] == "output"] == ["line 4", "more", "line 5", "more"]
        backlog(events.Output("web", "web.1", stream="stdout", text="y" * 100 + "\n"))
        assert [r["line"] for r in backlog.take() if r["event"] == "output"] == ["y" * 100]

    asyncio.run(main())


def test_a_backlog_drops_old_output_folds_metrics_and_gives_up_on_a_stuck_client() -> None:
    async def main() -> None:
        backlog = Backlog(output_events=2, other_events=3)
        for i in range(4):
            backlog(events.Output("web", "web.1", stream="stdout", text="a\nb\n" if i == 0 else "c\n"))
        for cpu in (1.0, 2.0):
            backlog(events.Sample("web", "web.1", pid=1, cpu_percent=cpu, cpu_time_s=0, rss_bytes=0, peak_rss_bytes=0,
                                  read_bytes=None, write_bytes=None, threads=1, children=0))
        records = backlog.take()
        assert records[0]["event"] == "lagged" and records[0]["lines"] == {"web.1": 3}
        assert [r["line"] for r in records if r["event"] == "output"] == ["c", "c"]
        assert [r["cpu_percent"] for r in records if r["event"] == "metrics"] == [2.0]
        assert not backlog.gone.is_set()
        for _ in range(4):
            backlog(events.Paused("web", "web.1"))
        assert backlog.overflowed and backlog.gone.is_set()
        assert backlog.take() == []

    asyncio.run(main())


@pytest.mark.parametrize("event", [*ALL_EVENTS, events.Reloaded("web", "web", action="restarted", changes=["cmd"], detail="restarted (cmd changed)", ts=1.5)],
                         ids=lambda event: type(event).__name__)
def test_an_event_is_a_value_of_its_fields(event: events.Event) -> None:
    """Events are plain slotted classes: equal, hashed, printed, copied and
    pickled by their fields, in order, and immutable."""
    values = {field: getattr(event, field) for field in event.fields}
    assert event.fields[:3] == ("name", "instance", "ts") and len(set(event.fields)) == len(event.fields)
    again = type(event)(**values)
    assert again == event and not again != event and again is not event
    if not isinstance(event, events.Reloaded):  # (its list of changes is not hashable)
        assert hash(again) == hash(event) and len({event, again}) == 1
    assert pickle.loads(pickle.dumps(event)) == event and copy.copy(event) == event
    assert repr(event) == f"{type(event).__name__}({', '.join(f'{field}={value!r}' for field, value in values.items())})"
    assert event != type(event)(**{**values, "ts": 2.5}) and event != events.Event(event.name, event.instance, ts=event.ts)
    with pytest.raises(AttributeError):
        event.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(event, "__dict__")


def test_an_event_is_stamped_now_unless_given_a_time() -> None:
    before = time.time()
    event = events.Started("web", "web.1", 42)
    assert before <= event.ts <= time.time() and event.attempt == 1
    with pytest.raises(TypeError):
        events.Started("web", "web.1", 42, 1, 1.5)  # type: ignore[misc]  # (the time is given by keyword only)

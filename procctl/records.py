"""Events as JSON records (docs/events.md) and back: the one mapping of
events onto the `--events` stream, the control socket's `subscribe` stream
and a run's `events.jsonl`, and of such a record back onto its event (a view
on another side of the socket, `procctl logs`). No I/O.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from typing import Any

from procctl.events import (
    Event, Exited, GaveUp, LimitExceeded, Message, Notice, Output, Paused, PoolSample, Queued, Ready, RegionSample, Reloaded,
    Requested, Restarting, Resumed, Sample, Skipped, Started, StateChanged, StatusMessage,
)  # fmt: skip
from procctl.states import State, signal_name


def _line_encoder() -> Callable[[dict[str, Any]], str]:
    """What `json.dumps(record, ensure_ascii=False, default=str)` writes,
    through json's own C encoder made once: `dumps` with arguments makes a
    `JSONEncoder` for every call (two records a job in a run's event log:
    2.97 → 1.65 µs a record measured)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # (an interpreter without json's C speedups)
        return lambda record: json.dumps(record, ensure_ascii=False, default=str)
    encode = make(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda record: "".join(encode(record, 0))


_encode_line = _line_encoder()


def record_line(record: dict[str, Any]) -> bytes:
    """One record as a line of JSON (UTF-8; a value JSON has no form for, as its text)."""
    return _encode_line(record).encode() + b"\n"


def event_records(event: Event) -> Iterator[dict[str, Any]]:
    """The JSON records of one event (docs/events.md): one, or one per line
    of output. The one mapping of events onto the `--events` stream and the
    control socket's subscription."""
    base = {"ts": round(event.ts, 6), "event": event.kind, "name": event.name, "instance": event.instance}
    if isinstance(event, Output):
        for line in event.lines():
            yield {**base, "stream": event.stream, "line": line}
        return
    if isinstance(event, Exited):
        yield {
            **base,
            "status": event.status,
            "code": event.code,
            "signal": signal_name(event.signal) or None,
            "duration": round(event.duration_s, 6),
        }
        return
    if isinstance(event, Restarting):
        yield {**base, "attempt": event.attempt, "delay": event.delay_s, "reason": event.reason}
        return
    if isinstance(event, Message):
        yield {**base, "text": event.text, "from": event.sender}
        return
    record = dict(base)
    for field in event.fields:
        if field not in record and field != "ts":
            record[field] = getattr(event, field)
    yield record


_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (Queued, Started, Ready, Skipped, GaveUp, LimitExceeded, Paused, Resumed, Notice, Requested, StateChanged, StatusMessage, Reloaded)
}


def _signal_number(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return int(signal.Signals[name])
    except KeyError:
        digits = name.removeprefix("SIG")
        return int(digits) if digits.isdigit() else None


def from_record(record: dict[str, Any]) -> Event | None:
    """The event a record stands for (the inverse of `event_records`, one
    line of output at a time); None for a kind this version does not know.
    Raises KeyError, TypeError or ValueError for a malformed record."""
    kind = record["event"]
    base: dict[str, Any] = {"name": str(record["name"]), "instance": str(record["instance"]), "ts": float(record["ts"])}
    if kind == "output":
        return Output(**base, stream=str(record["stream"]), text=str(record["line"]) + "\n")
    if kind == "exited":
        return Exited(**base, status=State(record["status"].replace(" ", "_")), code=record["code"], signal=_signal_number(record["signal"]),
                      duration_s=float(record["duration"]))
    if kind == "restarting":
        return Restarting(**base, attempt=int(record["attempt"]), delay_s=float(record["delay"]), reason=str(record.get("reason", "")))
    if kind == "message":
        sender = record["from"]
        return Message(**base, text=str(record["text"]), sender=None if sender is None else str(sender))
    if kind == "metrics":
        cls: type[Event] = PoolSample if "pool_size" in record else RegionSample if "size_bytes" in record else Sample
    else:
        found = _KINDS.get(kind)
        if found is None:
            return None
        cls = found
    fields = {field: record[field] for field in cls.fields if field not in base and field in record}
    if cls is StateChanged:
        fields["state"] = State(fields["state"])
    return cls(**base, **fields)

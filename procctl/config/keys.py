"""The keys of a manifest's tables: for each kind of table one declarative
table of its keys (`SETTINGS`, `PROCESS`, `READY`, `LIVENESS`, `WATCH`) —
the key, the model's field it fills, and how its value is read — and the
readers of the values that need more than `reading.Reader` gives (a probe's
target, `each`, `depends_on`, `watch`…). The values a key may take come from
the model's `Literal` annotations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from procctl.config import executors, shared
from procctl.config.manifest import MAX_POOL, MAX_REPLICAS, DaskSettings, ItemRange, LivenessSpec, ProcessSpec, ReadySpec, Settings, WatchSpec
from procctl.config.reading import Key, KeyPath, Reader, bounded, choices, chosen, nearest, positive_duration
from procctl.config.values import describe


def _max_parallel(reader: Reader, value: object, path: KeyPath) -> int | str:
    return "auto" if value == "auto" else reader.integer(value, path, 1, MAX_POOL)


def _dask(reader: Reader, value: object, path: KeyPath) -> DaskSettings:
    table = reader.table(value, *path)
    reader.check_keys(table, ("scheduler",), *path)
    if "scheduler" not in table:
        raise reader.error('missing key: scheduler (e.g. "tcp://127.0.0.1:8786")', *path)
    try:
        return DaskSettings(executors.scheduler_address(reader.string(table["scheduler"], (*path, "scheduler"))))
    except ValueError as exc:
        raise reader.error(str(exc), *path, "scheduler") from None


def _watchdog(reader: Reader, value: object, path: KeyPath) -> float:
    seconds = reader.duration(value, path, positive=True)
    if not 0.01 <= seconds <= 86_400:
        raise reader.error("expected a duration from 10ms to 24h", *path)
    return seconds


def _restart(reader: Reader, value: object, path: KeyPath) -> str:
    return reader.choice("no" if value is False else value, path, choices(ProcessSpec, "restart"))


def _limit_keys(model: type) -> tuple[Key, ...]:
    """`limits`, `on_limit` and `nice`, of [settings] and of a process."""
    return (
        Key("limits", Reader.limits),
        Key("on_limit", chosen(model, "on_limit")),
        Key("nice", bounded(-20, 19)),
    )


MIN_LOG_SIZE = 1024
MAX_WATCH_PATTERNS = 100


def _log_size(reader: Reader, value: object, path: KeyPath) -> int:
    size = reader.size(value, path)
    if size < MIN_LOG_SIZE:
        raise reader.error("expected a size of at least 1KiB", *path)
    return size


def _log_keys() -> tuple[Key, ...]:
    """`log_max_size` and `log_keep`, of [settings] and of a process: the
    process's own, else the settings'."""
    return (
        Key("log_max_size", _log_size),
        Key("log_keep", bounded(1, 1000)),
    )


INHERITED = ("log_max_size", "log_keep", "tty")
"""Process keys whose value, when a process does not set it, is [settings]'s."""


def _patterns(reader: Reader, value: object, path: KeyPath) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item.strip() for item in value):
        raise reader.error(f"expected a list of paths or globs, got {describe(value)}", *path)
    if len(value) > MAX_WATCH_PATTERNS:
        raise reader.error(f"at most {MAX_WATCH_PATTERNS} patterns, got {len(value)}", *path)
    for item in value:
        if item.startswith("/") or len(item) > 1024:
            raise reader.error(f"expected a path relative to the process's cwd, got {describe(item)}", *path)
    return tuple(value)


def _debounce(reader: Reader, value: object, path: KeyPath) -> float:
    seconds = reader.duration(value, path, positive=True)
    if not 0.01 <= seconds <= 10:
        raise reader.error("expected a duration from 10ms to 10s", *path)
    return seconds


WATCH = (
    Key("paths", _patterns),
    Key("ignore", _patterns),
    Key("debounce", _debounce, "debounce_s"),
)


def _watch(reader: Reader, value: object, path: KeyPath) -> WatchSpec:
    """`watch = ["src/**/*.py"]`, or `{ paths = [...], ignore = [...], debounce = "200ms" }`."""
    if isinstance(value, list):
        return WatchSpec(paths=_patterns(reader, value, path))
    fields = reader.keys(reader.table(value, *path), WATCH, *path)
    if "paths" not in fields:
        raise reader.error("missing key: paths (the files to watch)", *path)
    return WatchSpec(**fields)


SETTINGS = (
    Key("max_parallel", _max_parallel),
    Key("stop_timeout", Reader.duration, "stop_timeout_s"),
    Key("fail_fast", Reader.boolean),
    Key("pool", Reader.boolean),
    Key("exit_on_end", Reader.boolean),
    Key("tty", Reader.boolean),
    Key("metrics_interval", positive_duration, "metrics_interval_s"),
    Key("env_file", Reader.env_file),
    Key("schedule", chosen(Settings, "schedule")),
    Key("min_free_memory", Reader.memory_amount),
    Key("dask", _dask),
    *_limit_keys(Settings),
    *_log_keys(),
)


def _cmd(reader: Reader, value: object, path: KeyPath) -> str | tuple[str, ...]:
    if isinstance(value, list):
        if not value or not all(isinstance(part, str) for part in value) or not value[0]:
            raise reader.error("a list command needs one or more strings, the first non-empty", *path)
        return tuple(value)
    return reader.string(value, path)


def _cwd(reader: Reader, value: object, path: KeyPath) -> Path:
    cwd = (reader.root / reader.string(value, path)).resolve()
    if not cwd.is_dir():
        raise reader.error(f"no such directory: {cwd}", *path)
    return cwd


def _depends_on(reader: Reader, value: object, path: KeyPath) -> dict[str, str]:
    name = path[1]
    if isinstance(value, list):
        pairs = []
        for item in value:
            if not isinstance(item, str):
                raise reader.error(f"expected process names, got {describe(item)}", *path)
            pairs.append((item, "started"))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise reader.error(f"expected a list of names or a table name = condition, got {describe(value)}", *path)
    conditions = choices(ProcessSpec, "depends_on")
    depends: dict[str, str] = {}
    for dep, condition in pairs:
        if dep == name:
            raise reader.error("a process cannot depend on itself", *path)
        if dep not in reader.names:
            # (The list of the others only for the message: a lookup per
            # dependency keeps ten thousand processes linear.)
            raise reader.error(f"unknown process {dep!r}", *path, suggestion=nearest(dep, [other for other in reader.names if other != name]))
        depends[dep] = reader.choice(condition, (*path, dep), conditions)
    return depends


READY = (
    Key("timeout", positive_duration, "timeout_s"),
    Key("interval", positive_duration, "interval_s"),
)
READY_KINDS = choices(ReadySpec, "kind")


LIVENESS = (
    Key("interval", positive_duration, "interval_s"),
    Key("timeout", positive_duration, "timeout_s"),
    Key("failures", bounded(1, 1000)),
)
LIVENESS_KINDS = choices(LivenessSpec, "kind")


def _probe(model: type[ReadySpec] | type[LivenessSpec], keys: tuple[Key, ...], kinds: tuple[str, ...]) -> Callable[[Reader, object, KeyPath], Any]:
    """The reader of a probe's table (`ready`, `liveness`): exactly one of
    its kinds, with its target, and the model's other keys."""

    def read(reader: Reader, value: object, path: KeyPath) -> Any:
        table = reader.table(value, *path)
        reader.check_keys(table, (*kinds, *(key.name for key in keys)), *path)
        found = [kind for kind in kinds if kind in table]
        if len(found) != 1:
            raise reader.error(f"needs exactly one of {', '.join(kinds)}", *path)
        kind = found[0]
        target = _probe_target(reader, kind, table.pop(kind), (*path, kind))
        return model(kind=kind, target=target, **reader.keys(table, keys, *path))  # type: ignore[arg-type]

    return read


def _probe_target(reader: Reader, kind: str, value: object, path: KeyPath) -> str:
    if kind == "notify":
        if value is not True:
            raise reader.error(f"expected true (READY=1 on $NOTIFY_SOCKET makes it ready), got {describe(value)}", *path)
        return ""
    target = reader.string(value, path)
    if kind == "log":
        try:
            re.compile(target)
        except re.error as exc:
            raise reader.error(f"not a valid regular expression: {exc}", *path) from None
    elif kind == "tcp":
        host, sep, port = target.rpartition(":")
        if not sep or not host or not (port == "{port}" or (port.isdigit() and 1 <= int(port) <= 65535)):
            raise reader.error(f"expected HOST:PORT, got {describe(target)}", *path)
    elif kind == "http" and not target.startswith(("http://", "https://")):
        raise reader.error(f"expected a URL starting with http://, got {describe(target)}", *path)
    return target


def _each(reader: Reader, value: object, path: KeyPath) -> Sequence[str]:
    if isinstance(value, list):
        items = []
        if not value:
            reader.warn("the list is empty: 0 jobs", *path)
        for item in value:
            if isinstance(item, (dict, list)):
                raise reader.error(f"items must be strings or numbers, got {describe(item)}", *path)
            items.append(str(item).lower() if isinstance(item, bool) else str(item))
        return tuple(items)
    table = reader.table(value, *path)
    reader.check_keys(table, ("glob", "range"), *path)
    if len(table) != 1:
        raise reader.error("needs one of: a list, { glob = ... }, { range = [a, b] }", *path)
    if "glob" in table:
        pattern = reader.string(table["glob"], (*path, "glob"))
        import glob  # only for an `each` glob

        matches = tuple(sorted(glob.glob(pattern, root_dir=reader.root, recursive=True)))
        if not matches:
            reader.warn(f"the glob {pattern!r} matches no file: 0 jobs", *path, "glob")
        return matches
    bounds = table["range"]
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        raise reader.error(f"expected [first, last] integers, got {describe(bounds)}", *path, "range")
    if bounds[1] - bounds[0] + 1 > MAX_RANGE_ITEMS:
        count = bounds[1] - bounds[0] + 1
        raise reader.error(f"the range [{bounds[0]}, {bounds[1]}] has {count:,} items: a range may have up to {MAX_RANGE_ITEMS:,}", *path, "range")
    if bounds[0] > bounds[1]:
        reader.warn(f"the range [{bounds[0]}, {bounds[1]}] is empty (its first is past its last): 0 jobs", *path, "range")
    return ItemRange(bounds[0], bounds[1])


MAX_RANGE_ITEMS = 1_000_001
"""What `each = { range = … }` may make: a million and one jobs."""


PROCESS = (
    Key("cmd", _cmd),
    Key("cwd", _cwd),
    Key("env", Reader.env_table),
    Key("env_file", Reader.env_file),
    Key("depends_on", _depends_on),
    Key("ready", _probe(ReadySpec, READY, READY_KINDS)),
    Key("liveness", _probe(LivenessSpec, LIVENESS, LIVENESS_KINDS)),
    Key("restart", _restart),
    Key("max_restarts", bounded(0)),
    Key("min_uptime", Reader.duration, "min_uptime_s"),
    Key("backoff", Reader.duration, "backoff_s"),
    Key("replicas", bounded(1, MAX_REPLICAS)),
    Key("port", bounded(1, 65535)),
    Key("each", _each),
    Key("timeout", positive_duration, "timeout_s"),
    Key("stop_signal", Reader.signal),
    Key("stop_timeout", Reader.duration, "stop_timeout_s"),
    Key("watchdog", _watchdog, "watchdog_s"),
    Key("shared", lambda reader, value, path: shared.uses(reader, value, path[1], reader.regions)),
    Key("pool", Reader.boolean),
    Key("exit_on_end", Reader.boolean),
    Key("watch", _watch),
    Key("tty", Reader.boolean),
    Key("executor", chosen(ProcessSpec, "executor")),
    *_limit_keys(ProcessSpec),
    *_log_keys(),
)

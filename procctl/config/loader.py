"""Reading a manifest: TOML or Procfile text → a validated `Manifest`.

Each kind of table is read through one declarative table of its keys
(`SETTINGS`, `PROCESS`, `READY`): the key, the model's field it fills, and
how its value is read; the values a key may take come from the model's
`Literal` annotations. What depends on several keys at once (`each` and
`replicas`, the pool, the limits merged over [settings]) is checked after.
Every problem becomes one ManifestError naming the file, the line and the key.
"""

from __future__ import annotations

import graphlib
import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from procctl.config import executors, shared
from procctl.config.manifest import MAX_NAME_LENGTH, MAX_POOL, MAX_REPLICAS, PROCESS_NAME, DaskSettings, ItemRange, Limits, LivenessSpec, Manifest, ProcessSpec, ReadySpec, Settings, WatchSpec
from procctl.config.placeholders import UnsafePlacement, compile_command
from procctl.config.plan import cycle_of, dependency_levels
from procctl.config.procfile import parse_procfile, ports
from procctl.config.envfile import read_env_file
from procctl.config.reading import Key, KeyPath, Reader, bounded, choices, chosen, nearest, positive_duration
from procctl.config.values import describe
from procctl.errors import ManifestError

TOP_KEYS = ("settings", "env", "shared", "process")


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


def _ready(reader: Reader, value: object, path: KeyPath) -> ReadySpec:
    table = reader.table(value, *path)
    reader.check_keys(table, (*READY_KINDS, *(key.name for key in READY)), *path)
    kinds = [kind for kind in READY_KINDS if kind in table]
    if len(kinds) != 1:
        raise reader.error(f"needs exactly one of {', '.join(READY_KINDS)}", *path)
    kind = kinds[0]
    target = _probe_target(reader, kind, table.pop(kind), (*path, kind))
    return ReadySpec(kind=kind, target=target, **reader.keys(table, READY, *path))  # type: ignore[arg-type]


LIVENESS = (
    Key("interval", positive_duration, "interval_s"),
    Key("timeout", positive_duration, "timeout_s"),
    Key("failures", bounded(1, 1000)),
)
LIVENESS_KINDS = choices(LivenessSpec, "kind")


def _liveness(reader: Reader, value: object, path: KeyPath) -> LivenessSpec:
    table = reader.table(value, *path)
    reader.check_keys(table, (*LIVENESS_KINDS, *(key.name for key in LIVENESS)), *path)
    kinds = [kind for kind in LIVENESS_KINDS if kind in table]
    if len(kinds) != 1:
        raise reader.error(f"needs exactly one of {', '.join(LIVENESS_KINDS)}", *path)
    kind = kinds[0]
    target = _probe_target(reader, kind, table.pop(kind), (*path, kind))
    return LivenessSpec(kind=kind, target=target, **reader.keys(table, LIVENESS, *path))  # type: ignore[arg-type]


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
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        or bounds[1] - bounds[0] > 1_000_000
    ):
        raise reader.error(f"expected [first, last] integers, got {describe(bounds)}", *path, "range")
    if bounds[0] > bounds[1]:
        reader.warn(f"the range [{bounds[0]}, {bounds[1]}] is empty (its first is past its last): 0 jobs", *path, "range")
    return ItemRange(bounds[0], bounds[1])


PROCESS = (
    Key("cmd", _cmd),
    Key("cwd", _cwd),
    Key("env", Reader.env_table),
    Key("env_file", Reader.env_file),
    Key("depends_on", _depends_on),
    Key("ready", _ready),
    Key("liveness", _liveness),
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


def _settings(reader: Reader, raw: object) -> tuple[Settings, dict[str, str]]:
    fields = reader.keys(reader.table(raw, "settings"), SETTINGS, "settings")
    fields["max_parallel_given"] = "max_parallel" in fields
    env = reader.env_file_values(fields["env_file"], ("settings", "env_file")) if "env_file" in fields else {}
    return Settings(**fields), env


def _process(reader: Reader, name: str, raw: object) -> ProcessSpec:
    path = ("process", name)
    if not PROCESS_NAME.match(name):
        raise reader.error("a process name is letters, digits, '-' and '_'", *path)
    if len(name) > MAX_NAME_LENGTH:
        raise reader.error(f"a process name is at most {MAX_NAME_LENGTH} characters, this one has {len(name)}", *path)
    fields = reader.keys(reader.table(raw, *path), PROCESS, *path)
    if "port" in fields and fields["port"] + fields.get("replicas", 1) - 1 > 65535:
        last = fields["port"] + fields.get("replicas", 1) - 1
        raise reader.error(f"the last of {fields.get('replicas', 1)} replicas would get PORT={last}, past 65535 (lower port or replicas)", *path, "port")
    if "cmd" not in fields:
        raise reader.error("missing key: cmd (the command to run)", *path)
    env = reader.env_file_values(fields["env_file"], (*path, "env_file")) if "env_file" in fields else {}
    env.update(fields.pop("env", {}))
    fields["env"] = env
    fields.setdefault("depends_on", {})
    each = "each" in fields
    if each:
        if fields.get("replicas", 1) > 1:
            raise reader.error("each and replicas cannot go together", *path, "each")
        try:
            compile_command(fields["cmd"])
        except UnsafePlacement as exc:
            raise reader.error(str(exc), *path, "cmd") from None
    # `each` jobs always take a pool slot; a plain process as it (or [settings] pool) says.
    if "pool" not in fields:
        fields["pool"] = each or reader.defaults.pool
    elif each and not fields["pool"]:
        raise reader.error("`each` jobs always take a pool slot (the pool is what bounds them)", *path, "pool")
    fields["limits"] = fields.get("limits", Limits()).merged_over(reader.defaults.limits)
    fields.setdefault("exit_on_end", reader.defaults.exit_on_end)
    fields.setdefault("on_limit", reader.defaults.on_limit)
    fields.setdefault("nice", reader.defaults.nice)
    for key in INHERITED:
        fields.setdefault(key, getattr(reader.defaults, key))
    spec = ProcessSpec(name=name, cwd=fields.pop("cwd", reader.root), line=reader.lines.line(*path), **fields)
    refusal = executors.dask_refusal(spec) if spec.executor == "dask" else None
    if refusal is not None:
        raise reader.error(refusal[1], *path, refusal[0])
    return spec


def _refuse_nul(reader: Reader, value: object, path: KeyPath = ()) -> None:
    """No string of the manifest may hold a NUL byte: none could reach a
    child (argv, the environment and paths end at the first NUL)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key:
                raise reader.error("a key cannot hold a NUL byte (\\u0000)", *path, key)
            _refuse_nul(reader, item, (*path, key))
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(reader, item, path)
    elif isinstance(value, str) and "\0" in value:
        raise reader.error("a value cannot hold a NUL byte (\\u0000)", *path)


def _load_toml(path: Path, text: str) -> Manifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message).strip() or "invalid TOML"
        raise ManifestError(f"invalid TOML: {message}", path=path.name, line=line) from None
    reader = Reader(path, text)
    _refuse_nul(reader, data)
    reader.check_keys(data, TOP_KEYS)
    settings, env = _settings(reader, data.get("settings", {}))
    reader.defaults = settings
    if "env" in data:
        env.update(reader.env_table(data["env"], ("env",)))
    if "shared" in data:
        reader.regions = shared.regions(reader, data["shared"])
    raw_processes = reader.table(data.get("process", {}), "process")
    if not raw_processes:
        raise ManifestError("no processes defined (add a [process.NAME] table with a cmd)", path=path.name, line=1)
    reader.names = dict.fromkeys(raw_processes)
    processes = {name: _process(reader, name, raw) for name, raw in raw_processes.items()}
    try:
        dependency_levels(processes)
    except graphlib.CycleError as exc:
        cycle = cycle_of(exc, processes)
        raise ManifestError(
            "dependency cycle: " + " → ".join(cycle), path=path.name, line=processes[cycle[0]].line, key=f"process.{cycle[0]}.depends_on"
        ) from None
    return Manifest(path=path, settings=settings, env=env, processes=processes, kind="toml", shared=reader.regions, warnings=tuple(reader.warnings))


def _load_procfile(path: Path, text: str) -> Manifest:
    env: dict[str, str] = {}
    dotenv = path.parent / ".env"
    if dotenv.is_file():
        env = read_env_file(dotenv, manifest=path, key=".env", line=None)
    commands = parse_procfile(text, path.name)
    port = ports(list(commands), env, dotenv.name)
    processes = {
        # As under foreman and honcho: the first process to end stops the rest.
        name: ProcessSpec(name=name, cmd=command, cwd=path.parent, env={}, depends_on={}, port=port[name], line=line, exit_on_end=True)
        for name, (command, line) in commands.items()
    }
    return Manifest(path=path, settings=Settings(), env=env, processes=processes, kind="procfile")


def load_manifest(path: Path) -> Manifest:
    """Read, parse and validate the manifest at `path` (a `.toml` file, else a Procfile)."""
    path = Path(os.path.abspath(path))
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory, not a manifest") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError("not valid UTF-8", path=path.name, line=line) from None
    if "\0" in text:
        raise ManifestError("a NUL byte in the file", path=path.name, line=text.count("\n", 0, text.index("\0")) + 1)
    try:
        if path.suffix == ".toml":
            return _load_toml(path, text)
        return _load_procfile(path, text)
    except RecursionError:
        raise ManifestError("nested too deeply", path=path.name) from None

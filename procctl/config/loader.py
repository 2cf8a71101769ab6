"""Reading a manifest: TOML or Procfile text → a validated `Manifest`.

Every problem becomes one ManifestError naming the file, the line and the key.
tomllib gives no positions for keys, so `KeyLines` finds them in the source.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from procctl.config import shared, values
from procctl.config.envfile import parse_env, read_env_file
from procctl.config.placeholders import UnsafePlacement, compile_command
from procctl.config.manifest import MAX_REPLICAS, Limits, Manifest, ProcessSpec, ReadySpec, Settings, SharedRegion
from procctl.errors import ManifestError
from procctl.units import parse_duration, parse_size

NAME = re.compile(r"^[A-Za-z0-9_-]+$")
TOP_KEYS = ("settings", "env", "shared", "process")
SETTINGS_KEYS = (
    "max_parallel", "stop_timeout", "fail_fast", "metrics_interval", "env_file", "limits", "on_limit", "nice",
    "schedule", "min_free_memory", "pool",
)  # fmt: skip
SCHEDULES = ("fifo", "longest-first")
PROCESS_KEYS = (
    "cmd", "cwd", "env", "env_file", "depends_on", "ready", "restart", "max_restarts", "backoff", "replicas",
    "port", "each", "timeout", "stop_signal", "stop_timeout", "limits", "on_limit", "nice", "watchdog", "shared", "pool",
)  # fmt: skip
ON_LIMIT = ("kill", "restart")
READY_KINDS = ("log", "tcp", "http", "exec", "notify")
READY_KEYS = (*READY_KINDS, "timeout", "interval")
CONDITIONS = ("started", "ready", "succeeded")
RESTARTS = ("no", "on-failure", "always")


class KeyLines:
    """Line numbers of table headers and keys in TOML source, by key path."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = self._split(header.group(1))
                self._lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                path = table + self._split(key.group(1))
                for depth in range(len(table) + 1, len(path) + 1):
                    self._lines.setdefault(path[:depth], number)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted)
        return tuple(KeyLines._unescape(a) if a else b or c for a, b, c in parts)

    @staticmethod
    def _unescape(basic: str) -> str:
        """A double-quoted key as TOML reads it (escapes such as \\n decoded)."""
        try:
            return str(tomllib.loads(f'k = "{basic}"')["k"])
        except tomllib.TOMLDecodeError:
            return basic

    def line(self, *path: str) -> int:
        for depth in range(len(path), 0, -1):
            if path[:depth] in self._lines:
                return self._lines[path[:depth]]
        return 1


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: Iterable[str]) -> str:
    """A key path as TOML writes it: bare keys plain, any other key quoted
    (so that a key holding a newline cannot split a one-line error)."""
    return ".".join(key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False) for key in path)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.root = path.parent
        self.lines = KeyLines(text)
        self.defaults = Settings()
        """The [settings] in force: processes inherit its limits."""
        self.regions: dict[str, SharedRegion] = {}
        """The [shared] regions a process may list."""

    def error(self, message: str, *path: str, suggestion: str | None = None) -> ManifestError:
        return ManifestError(message, path=self.path.name, line=self.lines.line(*path), key=dotted(path), suggestion=suggestion)

    def check_keys(self, table: Mapping[str, Any], allowed: Iterable[str], *path: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                raise self.error("unknown key", *path, key, suggestion=_nearest(key, allowed))

    def table(self, value: object, *path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"expected a table, got {_describe(value)}", *path)
        return value

    def duration(self, value: object, *path: str, positive: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None
        if positive and seconds <= 0:
            raise self.error("must be more than zero", *path)
        return seconds

    def integer(self, value: object, *path: str, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
            bound = f"≥ {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise self.error(f"expected an integer {bound}, got {_describe(value)}", *path)
        return value

    def boolean(self, value: object, *path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {_describe(value)}", *path)
        return value

    def string(self, value: object, *path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected a non-empty string, got {_describe(value)}", *path)
        return value

    def env_table(self, value: object, *path: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, item in self.table(value, *path).items():
            if isinstance(item, bool):
                env[key] = "true" if item else "false"
            elif isinstance(item, (str, int, float)):
                env[key] = str(item)
            else:
                raise self.error(f"expected a string, got {_describe(item)}", *path, key)
        return env

    def env_file(self, value: object, *path: str) -> dict[str, str]:
        name = self.string(value, *path)
        return read_env_file(self.root / name, manifest=self.path, key=dotted(path), line=self.lines.line(*path))

    # ------------------------------------------------------------------

    def settings(self, raw: object) -> tuple[Settings, dict[str, str]]:
        table = self.table(raw, "settings")
        self.check_keys(table, SETTINGS_KEYS, "settings")
        kwargs: dict[str, Any] = {}
        if "max_parallel" in table:
            value = table["max_parallel"]
            kwargs["max_parallel"] = "auto" if value == "auto" else self.integer(value, "settings", "max_parallel", minimum=1, maximum=100_000)
        if "stop_timeout" in table:
            kwargs["stop_timeout_s"] = self.duration(table["stop_timeout"], "settings", "stop_timeout")
        if "fail_fast" in table:
            kwargs["fail_fast"] = self.boolean(table["fail_fast"], "settings", "fail_fast")
        if "pool" in table:
            kwargs["pool"] = self.boolean(table["pool"], "settings", "pool")
        if "metrics_interval" in table:
            kwargs["metrics_interval_s"] = self.duration(table["metrics_interval"], "settings", "metrics_interval", positive=True)
        env: dict[str, str] = {}
        if "env_file" in table:
            env = self.env_file(table["env_file"], "settings", "env_file")
            kwargs["env_file"] = self.root / table["env_file"]
        if "schedule" in table:
            if table["schedule"] not in SCHEDULES:
                raise self.error(
                    f"expected \"fifo\" or \"longest-first\", got {_describe(table['schedule'])}",
                    "settings", "schedule", suggestion=_nearest(str(table["schedule"]), SCHEDULES),
                )  # fmt: skip
            kwargs["schedule"] = table["schedule"]
        if "min_free_memory" in table:
            kwargs["min_free_memory"] = self.memory_amount(table["min_free_memory"], "settings", "min_free_memory")
        kwargs.update(self.limit_options(table, "settings"))
        return Settings(**kwargs), env

    def limit_options(self, table: Mapping[str, Any], *path: str) -> dict[str, Any]:
        """`limits`, `on_limit` and `nice` of [settings] or a process."""
        options: dict[str, Any] = {}
        if "limits" in table:
            options["limits"] = self.limits(table["limits"], *path, "limits")
        if "on_limit" in table:
            if table["on_limit"] not in ON_LIMIT:
                raise self.error(
                    f"expected \"kill\" or \"restart\", got {_describe(table['on_limit'])}",
                    *path, "on_limit", suggestion=_nearest(str(table["on_limit"]), ON_LIMIT),
                )  # fmt: skip
            options["on_limit"] = table["on_limit"]
        if "nice" in table:
            options["nice"] = self.integer(table["nice"], *path, "nice", minimum=-20, maximum=19)
        return options

    def limits(self, raw: object, *path: str) -> Limits:
        table = self.table(raw, *path)
        self.check_keys(table, values.LIMIT_KEYS, *path)
        parsed: dict[str, Any] = {}
        for key, value in table.items():
            try:
                parsed[key] = values.limit(key, value)
            except ValueError as exc:
                raise self.error(str(exc), *path, key) from None
        return Limits(**parsed)

    def memory_amount(self, value: object, *path: str) -> int:
        """A size, or a share of the machine's RAM: "10%"."""
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                share = float(value.strip()[:-1])
            except ValueError:
                share = -1.0
            if not 0 <= share <= 100:
                raise self.error(f"expected a size or a percentage of RAM, got {_describe(value)}", *path)
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * share / 100)
        return self.size(value, *path)

    def size(self, value: object, *path: str) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None

    def ready(self, raw: object, name: str) -> ReadySpec:
        path = ("process", name, "ready")
        table = self.table(raw, *path)
        self.check_keys(table, READY_KEYS, *path)
        kinds = [kind for kind in READY_KINDS if kind in table]
        if len(kinds) != 1:
            raise self.error("needs exactly one of log, tcp, http, exec, notify", *path)
        kind = kinds[0]
        if kind == "notify":
            if table[kind] is not True:
                raise self.error(f"expected true (READY=1 on $NOTIFY_SOCKET makes it ready), got {_describe(table[kind])}", *path, kind)
            target = ""
        else:
            target = self.string(table[kind], *path, kind)
        if kind == "log":
            try:
                re.compile(target)
            except re.error as exc:
                raise self.error(f"not a valid regular expression: {exc}", *path, kind) from None
        elif kind == "tcp":
            host, sep, port = target.rpartition(":")
            if not sep or not host or not (port == "{port}" or (port.isdigit() and 1 <= int(port) <= 65535)):
                raise self.error(f"expected HOST:PORT, got {_describe(target)}", *path, kind)
        elif kind == "http" and not target.startswith(("http://", "https://")):
            raise self.error(f"expected a URL starting with http://, got {_describe(target)}", *path, kind)
        kwargs: dict[str, Any] = {}
        if "timeout" in table:
            kwargs["timeout_s"] = self.duration(table["timeout"], *path, "timeout", positive=True)
        if "interval" in table:
            kwargs["interval_s"] = self.duration(table["interval"], *path, "interval", positive=True)
        return ReadySpec(kind=kind, target=target, **kwargs)  # type: ignore[arg-type]

    def each(self, raw: object, name: str) -> tuple[str, ...]:
        path = ("process", name, "each")
        if isinstance(raw, list):
            items = []
            for item in raw:
                if isinstance(item, (dict, list)):
                    raise self.error(f"items must be strings or numbers, got {_describe(item)}", *path)
                items.append(str(item).lower() if isinstance(item, bool) else str(item))
            return tuple(items)
        table = self.table(raw, *path)
        self.check_keys(table, ("glob", "range"), *path)
        if len(table) != 1:
            raise self.error("needs one of: a list, { glob = ... }, { range = [a, b] }", *path)
        if "glob" in table:
            pattern = self.string(table["glob"], *path, "glob")
            matches = sorted(glob.glob(pattern, root_dir=self.root, recursive=True))
            return tuple(matches)
        bounds = table["range"]
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            or bounds[1] - bounds[0] > 1_000_000
        ):
            raise self.error(f"expected [first, last] integers, got {_describe(bounds)}", *path, "range")
        return tuple(str(i) for i in range(bounds[0], bounds[1] + 1))

    def process(self, name: str, raw: object, names: Iterable[str]) -> ProcessSpec:
        path = ("process", name)
        if not NAME.match(name):
            raise self.error("a process name is letters, digits, '-' and '_'", *path)
        table = self.table(raw, *path)
        self.check_keys(table, PROCESS_KEYS, *path)
        if "cmd" not in table:
            raise self.error("missing key: cmd (the command to run)", *path)
        cmd_raw = table["cmd"]
        cmd: str | tuple[str, ...]
        if isinstance(cmd_raw, list):
            if not cmd_raw or not all(isinstance(part, str) for part in cmd_raw) or not cmd_raw[0]:
                raise self.error("a list command needs one or more strings, the first non-empty", *path, "cmd")
            cmd = tuple(cmd_raw)
        else:
            cmd = self.string(cmd_raw, *path, "cmd")
        cwd = self.root
        if "cwd" in table:
            cwd = (self.root / self.string(table["cwd"], *path, "cwd")).resolve()
            if not cwd.is_dir():
                raise self.error(f"no such directory: {cwd}", *path, "cwd")
        env: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        if "env_file" in table:
            env.update(self.env_file(table["env_file"], *path, "env_file"))
            kwargs["env_file"] = self.root / table["env_file"]
        if "env" in table:
            env.update(self.env_table(table["env"], *path, "env"))
        depends = self.depends_on(table.get("depends_on", []), name, names)
        if "ready" in table:
            kwargs["ready"] = self.ready(table["ready"], name)
        if "restart" in table:
            restart = "no" if table["restart"] is False else table["restart"]
            if restart not in RESTARTS:
                raise self.error(
                    f"expected one of {', '.join(RESTARTS)}, got {_describe(table['restart'])}",
                    *path, "restart", suggestion=_nearest(str(restart), RESTARTS),
                )  # fmt: skip
            kwargs["restart"] = restart
        if "max_restarts" in table:
            kwargs["max_restarts"] = self.integer(table["max_restarts"], *path, "max_restarts", minimum=0)
        if "backoff" in table:
            kwargs["backoff_s"] = self.duration(table["backoff"], *path, "backoff")
        if "replicas" in table:
            kwargs["replicas"] = self.integer(table["replicas"], *path, "replicas", minimum=1, maximum=MAX_REPLICAS)
        if "port" in table:
            kwargs["port"] = self.integer(table["port"], *path, "port", minimum=1, maximum=65535)
        if "each" in table:
            if kwargs.get("replicas", 1) > 1:
                raise self.error("each and replicas cannot go together", *path, "each")
            kwargs["each"] = self.each(table["each"], name)
            try:
                compile_command(cmd)
            except UnsafePlacement as exc:
                raise self.error(str(exc), *path, "cmd") from None
        if "timeout" in table:
            kwargs["timeout_s"] = self.duration(table["timeout"], *path, "timeout", positive=True)
        kwargs["pool"] = self.pooled(table, name, "each" in kwargs)
        if "stop_signal" in table:
            kwargs["stop_signal"] = self.signal(table["stop_signal"], *path, "stop_signal")
        if "stop_timeout" in table:
            kwargs["stop_timeout_s"] = self.duration(table["stop_timeout"], *path, "stop_timeout")
        if "watchdog" in table:
            seconds = self.duration(table["watchdog"], *path, "watchdog", positive=True)
            if not 0.01 <= seconds <= 86_400:
                raise self.error("expected a duration from 10ms to 24h", *path, "watchdog")
            kwargs["watchdog_s"] = seconds
        if "shared" in table:
            kwargs["shared"] = shared.uses(self, table["shared"], name, self.regions)
        options = self.limit_options(table, *path)
        kwargs["limits"] = options.get("limits", Limits()).merged_over(self.defaults.limits)
        kwargs["on_limit"] = options.get("on_limit", self.defaults.on_limit)
        kwargs["nice"] = options.get("nice", self.defaults.nice)
        return ProcessSpec(name=name, cmd=cmd, cwd=cwd, env=env, depends_on=depends, line=self.lines.line(*path), **kwargs)

    def pooled(self, table: Mapping[str, Any], name: str, each: bool) -> bool:
        """Whether its instances take a pool slot: `each` jobs always, a plain
        process as it (or [settings] pool) says."""
        if "pool" not in table:
            return each or self.defaults.pool
        pooled = self.boolean(table["pool"], "process", name, "pool")
        if each and not pooled:
            raise self.error("`each` jobs always take a pool slot (the pool is what bounds them)", "process", name, "pool")
        return pooled

    def depends_on(self, raw: object, name: str, names: Iterable[str]) -> dict[str, str]:
        path = ("process", name, "depends_on")
        known = [n for n in names if n != name]
        if isinstance(raw, list):
            pairs = []
            for item in raw:
                if not isinstance(item, str):
                    raise self.error(f"expected process names, got {_describe(item)}", *path)
                pairs.append((item, "started"))
        elif isinstance(raw, dict):
            pairs = list(raw.items())
        else:
            raise self.error(f"expected a list of names or a table name = condition, got {_describe(raw)}", *path)
        depends: dict[str, str] = {}
        for dep, condition in pairs:
            if dep == name:
                raise self.error("a process cannot depend on itself", *path)
            if dep not in known:
                raise self.error(f"unknown process {dep!r}", *path, suggestion=_nearest(dep, known))
            if condition not in CONDITIONS:
                raise self.error(
                    f"expected one of {', '.join(CONDITIONS)}, got {_describe(condition)}",
                    *path, dep, suggestion=_nearest(str(condition), CONDITIONS),
                )  # fmt: skip
            depends[dep] = condition
        return depends

    def signal(self, raw: object, *path: str) -> int:
        try:
            return values.signal_number(raw)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None


def _find_cycle(processes: Mapping[str, ProcessSpec]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in processes[name].depends_on:
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in processes:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _load_toml(path: Path, text: str) -> Manifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message).strip() or "invalid TOML"
        raise ManifestError(f"invalid TOML: {message}", path=path.name, line=line) from None
    reader = _Reader(path, text)
    reader.check_keys(data, TOP_KEYS)
    settings, env = reader.settings(data.get("settings", {}))
    reader.defaults = settings
    if "env" in data:
        env.update(reader.env_table(data["env"], "env"))
    if "shared" in data:
        reader.regions = shared.regions(reader, data["shared"])
    raw_processes = reader.table(data.get("process", {}), "process")
    if not raw_processes:
        raise ManifestError("no processes defined (add a [process.NAME] table with a cmd)", path=path.name, line=1)
    processes = {name: reader.process(name, raw, raw_processes) for name, raw in raw_processes.items()}
    cycle = _find_cycle(processes)
    if cycle:
        first = processes[cycle[0]]
        raise ManifestError(
            "dependency cycle: " + " → ".join(cycle), path=path.name, line=first.line, key=f"process.{cycle[0]}.depends_on"
        )
    return Manifest(path=path, settings=settings, env=env, processes=processes, kind="toml", shared=reader.regions)


def _load_procfile(path: Path, text: str) -> Manifest:
    env: dict[str, str] = {}
    dotenv = path.parent / ".env"
    if dotenv.is_file():
        env = read_env_file(dotenv, manifest=path, key=".env", line=None)
    try:
        base_port = int(env.get("PORT", "5000"))
    except ValueError:
        raise ManifestError(f"PORT must be a number, got {env['PORT']!r}", path=dotenv.name) from None
    processes: dict[str, ProcessSpec] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, command = stripped.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not NAME.match(name) or not command:
            raise ManifestError("expected 'name: command'", path=path.name, line=number)
        if name in processes:
            raise ManifestError(f"process {name!r} is defined twice", path=path.name, line=number)
        port = base_port + 100 * len(processes)
        processes[name] = ProcessSpec(name=name, cmd=command, cwd=path.parent, env={}, depends_on={}, port=port, line=number)
    if not processes:
        raise ManifestError("no processes defined (lines 'name: command')", path=path.name, line=1)
    return Manifest(path=path, settings=Settings(), env=env, processes=processes, kind="procfile")


def load(path: Path) -> Manifest:
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
    try:
        if path.suffix == ".toml":
            return _load_toml(path, text)
        return _load_procfile(path, text)
    except RecursionError:
        raise ManifestError("nested too deeply", path=path.name) from None


__all__ = ["load", "parse_env", "KeyLines"]

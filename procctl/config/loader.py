"""Reading a manifest: TOML or Procfile text → a validated `Manifest`.

Each kind of table is read through one declarative table of its keys
(`config.keys`: `SETTINGS`, `PROCESS`, `READY`); what depends on several
keys at once (`each` and `replicas`, the pool, the limits merged over
[settings], the dependency cycles) is checked here, after. Every problem
becomes one ManifestError naming the file, the line and the key.
"""

from __future__ import annotations

import graphlib
import os
import re
import tomllib
from pathlib import Path

from procctl.bounds import MAX_PORT
from procctl.config import executors, shared
from procctl.config.envfile import read_env_file
from procctl.config.keys import INHERITED, PROCESS, SETTINGS
from procctl.config.manifest import MAX_NAME_LENGTH, PROCESS_NAME, Limits, Manifest, ProcessSpec, Settings
from procctl.config.placeholders import UnsafePlacement, compile_command
from procctl.config.plan import cycle_of, dependency_levels
from procctl.config.procfile import parse_procfile, ports
from procctl.config.reading import KeyPath, Reader
from procctl.config.source import NotASource, read_source
from procctl.errors import ManifestError

TOP_KEYS = ("settings", "env", "shared", "process")

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
    if "port" in fields and fields["port"] + fields.get("replicas", 1) - 1 > MAX_PORT:
        last = fields["port"] + fields.get("replicas", 1) - 1
        raise reader.error(f"the last of {fields.get('replicas', 1)} replicas would get PORT={last}, past {MAX_PORT} (lower port or replicas)", *path, "port")
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
        raw = read_source(path)
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory, not a manifest") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    except NotASource as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
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

"""docker compose: one compose.yaml.

A manifest names no image, so the services run in the image given with
--image, which must hold what the commands need. They run as procctl runs
them on one host: the manifest's directory is bind-mounted at the same path
(so working directories and absolute paths hold), on the host's network (so
`127.0.0.1:5432` still reaches the database and ports are the manifest's),
with an init process (so the stop signal reaches the command instead of
being ignored by PID 1).

Compose interpolates `$VAR` in every value: each `$` is written `$$`.
The YAML is written by hand because a comment must say what does not map;
every string is a double-quoted scalar, so no value is read as a number, a
boolean or YAML syntax.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from typing import Any

from procctl.config.command import argv_of
from procctl.config.manifest import ProcessSpec
from procctl.config.plan import Job
from procctl.export.model import Export, Service, identical_replicas, ready_target, seconds, split_environment

FILE_NAME = "compose.yaml"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ULIMITS = (("nofile", "nofile"), ("cpu_time", "cpu"), ("nproc", "nproc"), ("fsize", "fsize"), ("core", "core"))


class Raw(str):
    """A string written as it is: no `$` doubling (compose keywords)."""


def scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value) if isinstance(value, Raw) else str(value).replace("$", "$$")
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif not char.isprintable():
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else scalar(Raw(key))


def dump(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML lines for dicts, lists and scalars (`#` keys are comments)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key.startswith("#"):
                lines.append(f"{pad}{item}")
            elif isinstance(item, (Mapping, list)) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines.extend(dump(item, indent + 1))
            else:
                lines.append(f"{pad}{_key(key)}: {_inline(item)}")
    else:
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                inner = dump(item, indent + 1)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def render(export: Export) -> dict[str, str]:
    services: dict[str, Any] = {}
    names = {service.name: _names(service) for service in export.services}
    comments = 0
    for service in export.services:
        jobs = service.jobs[:1] if identical_replicas(service) else service.jobs
        for job, name in zip(jobs, names[service.name]):
            body, notes = _service(export, service, job, names)
            for note in notes:
                comments += 1
                services[f"#{comments}"] = f"# {name}: not mapped: {note}"
            services[name] = body
    document = {"name": export.options.app, "services": services}
    text = export.header("compose") + "\n".join(dump(document)) + "\n"
    return {FILE_NAME: text}


def _names(service: Service) -> list[str]:
    if identical_replicas(service):
        return [service.name]
    return [job.name for job in service.jobs]


def _service(export: Export, service: Service, job: Job, names: Mapping[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    spec = service.spec
    notes: list[str] = []
    argv = list(argv_of(job.cmd))
    body: dict[str, Any] = {
        "image": export.options.image,
        "entrypoint": [],
        "command": argv,
        "working_dir": str(job.cwd),
        "network_mode": Raw("host"),
        "init": True,
        "volumes": [{"type": Raw("bind"), "source": str(path), "target": str(path)} for path in _mounts(export)],
    }
    if export.options.user:
        body["user"] = export.options.user
    environment = split_environment(export, job, files_win=False)
    if environment.files:
        body["env_file"] = [str(path) for path in environment.files]
    inline = dict(environment.inline)
    if identical_replicas(service):
        inline.pop("PROCCTL_INSTANCE", None)
        notes.append("replicas are identical containers: PROCCTL_INSTANCE is not set")
    if inline:
        body["environment"] = inline
    body["restart"] = Raw(_restart(spec, notes))
    body["stop_signal"] = Raw(signal.Signals(spec.stop_signal).name)
    body["stop_grace_period"] = Raw(seconds(export.stop_timeout_s(service)))
    healthcheck = _healthcheck(job, notes)
    if healthcheck:
        body["healthcheck"] = healthcheck
    depends: dict[str, Any] = {}
    for dep, condition in service.depends_on.items():
        other = export.service(dep)
        wanted = {"started": "service_started", "ready": "service_healthy", "succeeded": "service_completed_successfully"}[condition]
        if wanted == "service_healthy" and not _has_healthcheck(other.spec):
            wanted = "service_started"
        for name in names[dep]:
            depends[name] = {"condition": Raw(wanted)}
    if depends:
        body["depends_on"] = depends
    deploy: dict[str, Any] = {}
    if identical_replicas(service):
        deploy["replicas"] = spec.replicas
    limits: dict[str, Any] = {}
    if spec.limits.memory is not None:
        limits["memory"] = Raw(f"{spec.limits.memory}b")
    if spec.limits.cpu_percent is not None:
        limits["cpus"] = round(spec.limits.cpu_percent / 100, 4)
    if limits:
        deploy["resources"] = {"limits": limits}
    if deploy:
        body["deploy"] = deploy
    ulimits = {name: {"soft": pair[0], "hard": pair[1]} for field, name in _ULIMITS if (pair := getattr(spec.limits, field)) is not None}
    if ulimits:
        body["ulimits"] = ulimits
    if spec.limits.address_space is not None:
        notes.append("limits.address_space: docker has no RLIMIT_AS ulimit")
    if spec.nice is not None:
        notes.append("nice: compose has no per-service nice value")
    if spec.timeout_s is not None:
        notes.append("timeout: compose has no run time limit")
    if spec.watchdog_s is not None:
        notes.append("watchdog: compose has no notification socket")
    if spec.liveness is not None:
        notes.append("liveness: compose restarts no container whose healthcheck fails")
    if spec.shared:
        notes.append("shared: compose makes no shared memory regions (PROCCTL_SHM_* are not set)")
    if spec.on_limit == "restart" and spec.restart == "no" and spec.limits.memory is not None:
        notes.append('on_limit = "restart": the kernel kills a container over its memory limit, and only restart brings it back')
    return body, notes


def _mounts(export: Export) -> list[str]:
    """The manifest's directory, and any working directory outside it."""
    root = export.manifest.root
    mounts = [root]
    for service in export.services:
        cwd = service.spec.cwd
        if not cwd.is_relative_to(root) and cwd not in mounts:
            mounts.append(cwd)
    return [str(path) for path in mounts]


def _restart(spec: ProcessSpec, notes: list[str]) -> str:
    if spec.restart == "no" or spec.max_restarts == 0:
        return "no"
    notes.append("backoff: docker doubles its own restart delay from 100ms")
    if spec.restart == "on-failure":
        return f"on-failure:{spec.max_restarts}"
    notes.append("max_restarts: restart: always has no limit")
    return "always"


def _has_healthcheck(spec: ProcessSpec) -> bool:
    return spec.ready is not None and spec.ready.kind not in ("log", "notify")


def _healthcheck(job: Job, notes: list[str]) -> dict[str, Any] | None:
    ready = job.spec.ready
    target = ready_target(job)
    if ready is None or target is None:
        return None
    if ready.kind == "log":
        notes.append("ready = { log = ... }: a healthcheck cannot read the output; dependents wait for its start")
        return None
    if ready.kind == "notify":
        notes.append("ready = { notify = true }: compose has no notification socket; dependents wait for its start")
        return None
    if ready.kind == "exec":
        test: list[str] = [Raw("CMD-SHELL"), target]
    elif ready.kind == "tcp":
        host, _, port = target.rpartition(":")
        # The address is passed as arguments, never pasted into the script.
        test = [Raw("CMD"), "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', host, port]
        notes.append("ready = { tcp = ... }: the healthcheck needs bash in the image")
    else:
        test = [Raw("CMD"), "curl", "-fsS", "-o", "/dev/null", target]
        notes.append("ready = { http = ... }: the healthcheck needs curl in the image")
    # Fast checks while it starts, as procctl's probe; then every 10s, where procctl stops probing.
    return {
        "test": test,
        "start_period": Raw(seconds(ready.timeout_s)),
        "start_interval": Raw(seconds(ready.interval_s)),
        "interval": Raw("10s"),
        "timeout": Raw(seconds(max(ready.interval_s * 4, 1.0))),
        "retries": 3,
    }

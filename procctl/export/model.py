"""What every export format reads: the plan's services, their instances, their
dependencies and their environment split into env files and inline values.

Pure but for reading the manifest's env files (to know whether another tool
reads them as procctl does). Never spawns, never prints: what does not map is
a note for the command line to print, and what cannot be written at all is a
ManifestError naming the process.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from procctl.config.manifest import DependencyCondition, Manifest, ProcessSpec
from procctl.config.plan import Job, Plan, build_plan
from procctl.errors import ManifestError, UsageError

Format = Literal["systemd", "compose", "supervisord"]
FORMATS: tuple[Format, ...] = ("systemd", "compose", "supervisord")

HEADER = "# Written by procctl export"
"""Every file an export writes starts with this line: it is how a later export
knows the file is its own to overwrite or remove."""

APP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Options:
    app: str
    """Prefix of unit names, the compose project, the supervisord group."""
    user: str | None = None
    """Run the services as this user (User=, user=, user:)."""
    image: str | None = None
    """The image compose services run in."""


@dataclasses.dataclass(frozen=True)
class Service:
    """One exported process and its instances (one per replica)."""

    spec: ProcessSpec
    jobs: tuple[Job, ...]
    level: int
    """Dependency depth: 0 depends on nothing."""
    depends_on: Mapping[str, DependencyCondition]
    """On exported services only (an `each` pool is not one)."""
    awaited_success: bool
    """Another service waits for this one to exit 0 (`succeeded`)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def replicated(self) -> bool:
        return self.spec.replicas > 1


@dataclasses.dataclass(frozen=True)
class Export:
    manifest: Manifest
    options: Options
    services: tuple[Service, ...]
    """In dependency order."""
    notes: tuple[str, ...]
    """One line each: what was left out or does not map."""

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def stop_timeout_s(self, service: Service) -> float:
        spec = service.spec
        return spec.stop_timeout_s if spec.stop_timeout_s is not None else self.manifest.settings.stop_timeout_s

    def cannot(self, service: Service, key: str, fmt: Format, why: str) -> ManifestError:
        """The error for what a format cannot express, naming the manifest key."""
        return ManifestError(
            f"cannot be written for {fmt}: {why}",
            path=self.manifest.path.name,
            line=service.spec.line,
            key=f"process.{service.name}.{key}",
        )

    def header(self, fmt: Format) -> str:
        return (
            f"{HEADER} {fmt} for {self.options.app} from {printable(self.manifest.path.name)}.\n"
            "# The next export overwrites it: change the manifest, not this file.\n"
        )


def default_app_name(manifest: Manifest) -> str:
    """The manifest directory's name, made fit for unit and project names."""
    name = re.sub(r"[^a-z0-9_-]+", "-", manifest.root.name.lower()).strip("-_")[:64]
    return name or "app"


def check_app_name(name: str) -> str:
    if not APP_NAME.match(name):
        raise UsageError(f"--app: {name!r} is not a usable name (lowercase letters, digits, '-' and '_', at most 64)")
    return name


def build_export(manifest: Manifest, options: Options) -> Export:
    """The services of `manifest`: every process but `each` pools, which are
    batch work for procctl's own pool and are left out with a note."""
    notes: list[str] = []
    pools = {name for name, spec in manifest.processes.items() if spec.each is not None}
    for name in pools:
        notes.append(f"{name}: not exported: `each` jobs are batch work for procctl's pool, not services (run them with `procctl run {name}`)")
    kept = {name: spec for name, spec in manifest.processes.items() if name not in pools}
    if not kept:
        raise UsageError("nothing to export: every process is an `each` pool, and those are batch work, not services")
    for name, spec in kept.items():
        for dep in spec.depends_on:
            if dep in pools:
                notes.append(f"{name}: its dependency on {dep} (an `each` pool) is left out")
    services_only = manifest._replace(processes={
            name: spec._replace(depends_on={d: c for d, c in spec.depends_on.items() if d not in pools})
            for name, spec in kept.items()
        },
    )
    plan = build_plan(services_only)
    services = tuple(_service(plan, name) for name in plan.order)
    return Export(manifest=services_only, options=options, services=services, notes=tuple(notes))


def _service(plan: Plan, name: str) -> Service:
    spec = plan.manifest.processes[name]
    awaited = any(other.depends_on.get(name) == "succeeded" for other in plan.manifest.processes.values())
    return Service(
        spec=spec, jobs=plan.jobs_of(name), level=plan.levels[name], depends_on=dict(spec.depends_on), awaited_success=awaited
    )


def identical_replicas(service: Service) -> bool:
    """Replicas that differ only in their name (no port, no {index}): one
    definition run N times (compose deploy.replicas, supervisord numprocs)."""
    cmd = service.spec.cmd
    words = [cmd] if isinstance(cmd, str) else list(cmd)
    return service.replicated and service.spec.port is None and not any("{index}" in word for word in words)


def ready_target(job: Job) -> str | None:
    """The probe target of this instance, {port} substituted as the probes do."""
    ready = job.spec.ready
    if ready is None:
        return None
    port = job.env.get("PORT")
    return ready.target.replace("{port}", port) if port else ready.target


def printable(text: str) -> str:
    """`text` fit for a one-line comment: control characters escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


# -- environment ------------------------------------------------------------

_PLAIN_ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_./:,@+=-]*$")


def portable_env_file(path: Path) -> dict[str, str] | None:
    """The variables of an env file when systemd, docker compose and procctl
    all read it the same way — only `KEY=value` lines with plain values and
    `#` comments; else None (its values are then written inline)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not _PLAIN_ENV_LINE.match(line):
            return None
        key, _, value = line.partition("=")
        values[key] = value
    return values


@dataclasses.dataclass(frozen=True)
class Environment:
    files: tuple[Path, ...]
    """Env files to reference, in order."""
    inline: Mapping[str, str]
    """Everything the files do not give."""


def split_environment(export: Export, job: Job, *, files_win: bool, reader: Callable[[Path], dict[str, str] | None] = portable_env_file) -> Environment:
    """The instance's variables as env files plus inline values, such that the
    target reads exactly `job.env`. `files_win`: the target lets file values
    override inline ones (systemd's EnvironmentFile= over Environment=); else
    inline values override files (compose's environment over env_file). A
    file that would give a key the wrong value is inlined instead."""
    candidates = [path for path in (export.manifest.settings.env_file, job.spec.env_file) if path is not None]
    files = [(path, values) for path in candidates if (values := reader(path)) is not None]
    while True:
        from_files: dict[str, str] = {}
        for _, values in files:
            from_files.update(values)
        inline = {key: value for key, value in job.env.items() if from_files.get(key) != value}
        wrong = [key for key, value in from_files.items() if job.env.get(key) != value]
        if not files_win or not wrong:
            return Environment(files=tuple(path for path, _ in files), inline=inline)
        files = [(path, values) for path, values in files if not any(key in values for key in wrong)]


def seconds(value: float) -> str:
    """A duration as systemd and compose write it: '10s', '250ms'."""
    millis = round(value * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"

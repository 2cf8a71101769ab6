"""Where jobs run: `executor = "local" | "dask"` per process, the cluster of
`[settings] dask`, and `procctl run --executor` for one run. Pure.

A Dask cluster runs `each` jobs: commands that end, one per item, with
their output, limits and exit sent back. What only exists on this machine
(shared memory regions, the notification socket, probes that reach a port
or run a command here) does not go with them, so a process that needs it
stays local; the reason is said in one line.
"""

from __future__ import annotations

import re

from procctl.config.manifest import DaskSettings, Manifest, ProcessSpec
from procctl.errors import UsageError

EXECUTORS = ("local", "dask")
SCHEMES = {"dask": "tcp", "tcp": "tcp", "tls": "tls"}
"""What an address may start with, and the scheme Dask is given (`dask://`
is the cluster's scheduler over plain TCP)."""

_ADDRESS = r"^(?P<scheme>[a-z]+)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})/?$"
"""(Compiled by `re` when first used: most manifests name no executor.)"""


def scheduler_address(text: str) -> str:
    """`dask://HOST:PORT` (or `tcp://`, `tls://`) → the address Dask takes.
    Raises ValueError naming what was expected."""
    match = re.match(_ADDRESS, text.strip())
    if match is None or match["scheme"] not in SCHEMES or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"expected a scheduler address dask://HOST:PORT (or tcp://, tls://), got {text!r}")
    return f"{SCHEMES[match['scheme']]}://{match['host']}:{int(match['port'])}"


def dask_refusal(spec: ProcessSpec) -> tuple[str, str] | None:
    """(key, why) when `spec` cannot run on a Dask cluster, else None."""
    if spec.each is None:
        return "executor", 'a Dask cluster runs `each` jobs; a service or a single command runs here (executor = "local")'
    if spec.shared:
        return "shared", "shared memory regions exist on this machine only: a job on a Dask cluster cannot map them"
    if spec.watchdog_s is not None:
        return "watchdog", "the notification socket is on this machine only: a job on a Dask cluster cannot feed a watchdog"
    if spec.ready is not None and spec.ready.kind != "log":
        return "ready", f"a {spec.ready.kind} probe runs on this machine, not where the job runs; only a log probe follows a job on a Dask cluster"
    if spec.liveness is not None:
        return "liveness", f"a {spec.liveness.kind} liveness probe runs on this machine and looks for the job's tree here, not where the job runs"
    return None


def uses_dask(manifest: Manifest) -> list[ProcessSpec]:
    """The processes whose jobs go to the Dask cluster."""
    return [spec for spec in manifest.processes.values() if spec.executor == "dask"]


def with_executor(manifest: Manifest, choice: str | None) -> Manifest:
    """The manifest as `procctl run --executor CHOICE` runs it: `local`
    keeps every job here; `dask` sends every `each` process to the cluster
    of `[settings] dask`; `dask://HOST:PORT` to that cluster. Raises
    UsageError for a bad choice or a process the cluster cannot run."""
    if choice is None:
        return manifest
    choice = choice.strip()
    if choice == "local":
        processes = {name: spec._replace(executor="local") for name, spec in manifest.processes.items()}
        return manifest._replace(processes=processes)
    settings = manifest.settings
    if choice != "dask":
        try:
            settings = settings._replace(dask=DaskSettings(scheduler_address(choice)))
        except ValueError as exc:
            raise UsageError(f"--executor: {exc}; or local, or dask (the cluster of [settings] dask)") from None
    processes = {}
    for name, spec in manifest.processes.items():
        if spec.each is not None:
            refusal = dask_refusal(spec)
            if refusal is not None:
                raise UsageError(f"--executor {choice}: process.{name}.{refusal[0]}: {refusal[1]}")
            spec = spec._replace(executor="dask")
        processes[name] = spec
    if not any(spec.executor == "dask" for spec in processes.values()):
        raise UsageError(f"--executor {choice}: no `each` process in this run to send to the cluster")
    return manifest._replace(settings=settings, processes=processes)


def cluster_address(manifest: Manifest) -> str:
    """The scheduler the manifest's Dask jobs go to. Raises UsageError when
    none is given."""
    if manifest.settings.dask is None:
        names = ", ".join(spec.name for spec in uses_dask(manifest))
        raise UsageError(
            f'{names}: executor = "dask" needs a scheduler: [settings] dask = {{ scheduler = "tcp://HOST:8786" }}, or run with --executor dask://HOST:PORT'
        )
    return manifest.settings.dask.scheduler

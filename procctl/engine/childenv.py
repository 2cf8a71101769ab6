"""What every child is told of its supervisor, in its environment.

These names are a contract with the programs procctl runs (docs/manifest.md,
"The environment of a process"): a child reaches its own supervisor through
them — `procctl send`, `pause`, `status` run inside it need no `-f` — and
finds its notification socket and its shared regions.
"""

from __future__ import annotations

from pathlib import Path

SOCKET = "PROCCTL_SOCKET"
"""The supervisor's control socket (absolute path)."""
MANIFEST = "PROCCTL_MANIFEST"
"""The manifest the supervisor runs (absolute path)."""
PROCESS = "PROCCTL_PROCESS"
"""The process name from the manifest (`web`). Set with the job's own
environment (config.plan), as is INSTANCE: an export carries them too."""
INSTANCE = "PROCCTL_INSTANCE"
"""The instance name (`web.2`, `thumb[7]`, or `web`)."""
RUN_ID = "PROCCTL_RUN_ID"
"""This run of the supervisor, as the run history names it."""
NOTIFY_SOCKET = "NOTIFY_SOCKET"
"""sd_notify's address: '@' and an abstract socket name."""
WATCHDOG_USEC = "WATCHDOG_USEC"
"""sd_notify's watchdog timeout, in microseconds, when `watchdog` is set."""

NAMES = (SOCKET, MANIFEST, PROCESS, INSTANCE, RUN_ID, NOTIFY_SOCKET, WATCHDOG_USEC)


def supervisor_env(*, control_socket: Path | None, manifest: Path, run_id: str, notify_socket: str | None) -> dict[str, str]:
    """The part every child of one supervisor shares."""
    env = {MANIFEST: str(manifest), RUN_ID: run_id}
    if control_socket is not None:
        env[SOCKET] = str(control_socket)
    if notify_socket:
        env[NOTIFY_SOCKET] = notify_socket
    return env


def stale() -> tuple[str, ...]:
    """Names a child must not inherit from the supervisor's own environment
    (when procctl itself runs under another supervisor, or under systemd):
    they are set anew for each child, or left out."""
    return (*NAMES, "WATCHDOG_PID")

"""Writing manifests: the starter `procctl init` writes, and the TOML that
`procctl import` makes from a Procfile and its .env. TOML is written by tomli-w."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from procctl.config.envfile import read_env_file
from procctl.config.loader import NAME
from procctl.errors import ManifestError

_STARTER_HEADER = """\
# procctl manifest: `procctl run` runs it, `procctl check` validates it.
# Reference: docs/manifest.md. Durations: "500ms", "10s", "2m"; sizes: "256MiB".
#
# [settings]  max_parallel: processes running at once (default: CPU count)
#             stop_timeout: SIGTERM, then SIGKILL after this long
#             fail_fast: a failure that will not restart stops the rest
# [process.NAME]  cmd (a string runs through /bin/sh, a list is exec'd),
#             depends_on, ready (log/tcp/http/exec), restart, replicas, port,
#             each, timeout, limits...

"""


def starter_manifest() -> str:
    """A runnable starter: a service with a readiness probe, a job that waits
    for it, and a small pool of `each` jobs. Needs nothing but sh and Python."""
    document: dict[str, Any] = {
        "settings": {"max_parallel": 4, "stop_timeout": "5s", "fail_fast": True},
        "env": {"PYTHONUNBUFFERED": "1"},
        "process": {
            "server": {
                "cmd": ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                "port": 8000,
                "ready": {"http": "http://127.0.0.1:{port}/", "timeout": "10s"},
                "restart": "on-failure",
            },
            "smoke": {
                "cmd": "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/').status)\"",
                "depends_on": {"server": "ready"},
            },
            "jobs": {
                "cmd": "echo processing {item}; sleep 0.2",
                "each": {"range": [1, 5]},
                "timeout": "1m",
            },
        },
    }
    return _STARTER_HEADER + tomli_w.dumps(document)


def manifest_from_procfile(procfile: Path, env_file: Path | None) -> str:
    """procfile.toml text for a Procfile (`name: command` lines) and its .env."""
    try:
        text = procfile.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError("not valid UTF-8", path=procfile.name) from None
    except OSError as exc:
        raise ManifestError(f"cannot read {procfile}: {exc.strerror or exc}") from None
    processes: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, command = stripped.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not NAME.match(name) or not command:
            raise ManifestError("expected 'name: command'", path=procfile.name, line=number)
        processes[name] = {"cmd": command}
    if not processes:
        raise ManifestError("no processes defined (lines 'name: command')", path=procfile.name, line=1)
    env = read_env_file(env_file, manifest=procfile, key=".env", line=None) if env_file else {}
    # foreman gives process i (from 0) PORT = base + 100 * i; keep that.
    base = int(env["PORT"]) if env.get("PORT", "").isdigit() else 5000
    for i, table in enumerate(processes.values()):
        table["port"] = base + 100 * i
    document: dict[str, Any] = {}
    if env:
        document["env"] = env
    document["process"] = processes
    header = f"# Converted from {procfile.name}" + (f" and {env_file.name}" if env_file else "") + " by `procctl import`.\n\n"
    return header + tomli_w.dumps(document)

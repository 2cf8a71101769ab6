"""Writing manifests: the starter `procctl init` writes, the demo that
`procctl init --example` copies out, and the TOML that `procctl import` makes
from a Procfile and its .env (written by tomli-w)."""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tomli_w

from procctl.config.envfile import read_env_file
from procctl.config.procfile import parse_procfile, ports
from procctl.config.source import NotASource, read_source
from procctl.errors import ManifestError

REPOSITORY = "https://github.com/procctl/procctl"
"""Where the docs that written manifests point to live."""

# Written as text, not through tomli-w: a starter is read by people, and its
# comments are the point (tomli-w writes no comments, and sub-tables where the
# docs use one-line inline tables). A test loads it with the manifest loader.
STARTER = """\
# procctl manifest: `procctl run` runs it, `procctl check` validates it.
# Reference: REPOSITORY/blob/main/docs/manifest.md
# Durations: "500ms", "10s", "2m"; sizes: "256MiB", "1GiB".

[settings]
max_parallel = 4          # jobs running at once, or "auto" (default: CPU count)
stop_timeout = "5s"       # SIGTERM to the process group, then SIGKILL
fail_fast = true          # a failure that will not restart stops the rest

# For every process.
[env]
PYTHONUNBUFFERED = "1"

# A service: it keeps running, and others may wait until it is ready.
[process.server]
cmd = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
port = 8000                                          # {port} in cmd, and $PORT
ready = { http = "http://127.0.0.1:{port}/", timeout = "10s" }   # or log / tcp / exec
restart = "on-failure"                               # "no" | "on-failure" | "always"

# A job that starts once the server is ready.
[process.smoke]
cmd = ["python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/').status)"]
depends_on = { server = "ready" }                    # "started" | "ready" | "succeeded"

# A pool of jobs, one per item; {item} is shell-quoted.
[process.jobs]
cmd = "echo processing {item}; sleep 0.2"
each = { range = [1, 5] }                            # or a list, or { glob = "images/*.jpg" }
timeout = "1m"                                       # longest a job may take
""".replace("REPOSITORY", REPOSITORY)


def starter_manifest() -> str:
    """A runnable starter: a service with a readiness probe, a job that waits
    for it, and a small pool of `each` jobs. Needs nothing but sh and Python."""
    return STARTER


EXAMPLE_MANIFEST = "procfile.toml"
"""The demo's manifest; its scripts are the .py files beside it."""


def _examples_dir() -> Traversable:
    """The demo as installed: `procctl/examples/` inside the wheel. In a
    source checkout (an editable install) it is the repository's `examples/`,
    which the wheel build copies in."""
    packaged = resources.files("procctl").joinpath("examples")
    if packaged.joinpath(EXAMPLE_MANIFEST).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "examples"
    if (checkout / EXAMPLE_MANIFEST).is_file():
        return checkout
    raise ManifestError("the example files are not installed with this copy of procctl")


def example_files() -> dict[str, bytes]:
    """The demo manifest, the other example manifests and their scripts:
    file name → contents, the demo's manifest first."""
    directory = _examples_dir()
    files = sorted(entry.name for entry in directory.iterdir() if entry.name.endswith((".py", ".toml")) and entry.is_file())
    return {name: directory.joinpath(name).read_bytes() for name in (EXAMPLE_MANIFEST, *(f for f in files if f != EXAMPLE_MANIFEST))}


def manifest_from_procfile(procfile: Path, env_file: Path | None, manifest: Path) -> str:
    """procfile.toml text (to be written at `manifest`) for a Procfile
    (`name: command` lines) and its .env, read as `procctl run` reads them
    (the same PORT for each process). The .env is named, not copied: its
    values are often secrets, and the manifest is meant to be committed."""
    try:
        text = read_source(procfile).decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("not valid UTF-8", path=procfile.name) from None
    except OSError as exc:
        raise ManifestError(f"cannot read {procfile}: {exc.strerror or exc}") from None
    except NotASource as exc:
        raise ManifestError(f"cannot read {procfile}: {exc}") from None
    commands = parse_procfile(text, procfile.name)
    env = read_env_file(env_file, manifest=procfile, key=".env", line=None) if env_file else {}
    port = ports(list(commands), env, env_file.name if env_file else ".env")
    # As foreman and honcho run it: the first process to end ends the run.
    document: dict[str, Any] = {"settings": {"exit_on_end": True}}
    if env_file is not None:
        document["settings"]["env_file"] = os.path.relpath(env_file.absolute(), manifest.absolute().parent)
    document["process"] = {name: {"cmd": command, "port": port[name]} for name, (command, _) in commands.items()}
    header = f"# Converted from {procfile.name} by `procctl import`.\n"
    header += (
        "# exit_on_end: as under foreman and honcho, the first process to end stops the rest\n"
        "# and gives procctl its exit code (false: the others run on).\n"
    )
    if env_file is not None:
        header += f"# The environment stays in {env_file.name}, which env_file names: keep that file out of version control.\n"
    header += "\n"
    return header + tomli_w.dumps(document)

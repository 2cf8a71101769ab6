"""`procctl init`: a readable, commented starter that loads and checks, and
`init --example`: the demo written out, refusing to overwrite, that runs
with Python alone."""

from __future__ import annotations

import json
import re
import socket
import tomllib
from pathlib import Path

import pytest

from conftest import Project

from procctl.config.loader import load_manifest
from procctl.config.manifest import ReadySpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_init_writes_a_commented_manifest_that_loads_and_checks(project: Project) -> None:
    """1. `init` writes procfile.toml; the project's loader loads it and
       `procctl check` passes on it.
    2. It reads like the README's examples: a comment above each table, `cmd`
       on one line, `ready` and `depends_on` as one-line inline tables.
    3. A second `init` refuses to overwrite it (exit 2); --force overwrites."""
    result = project.run("init")
    assert result.returncode == 0, result.stderr
    text = project.manifest.read_text()

    manifest = load_manifest(project.manifest)
    assert list(manifest.processes) == ["server", "smoke", "jobs"]
    server = manifest.processes["server"]
    assert server.ready == ReadySpec(kind="http", target="http://127.0.0.1:{port}/", timeout_s=10.0)
    assert server.restart == "on-failure" and server.port == 8000
    assert manifest.processes["smoke"].depends_on == {"server": "ready"}
    assert manifest.processes["jobs"].each == ("1", "2", "3", "4", "5")
    check = project.run("check")
    assert check.returncode == 0 and "valid; 3 processes" in check.stdout, check.stderr

    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("[")]
    assert len(headers) == 5
    for i in headers[1:]:
        assert lines[i - 1].startswith("# "), f"no comment above {lines[i]}"
    assert lines[0].startswith("# ") and "https://" in text and "docs/manifest.md" in text
    assert all(tomllib.loads(line.split(" #")[0] if line.startswith("ready") else line) for line in lines if line.startswith("cmd = "))
    assert re.search(r"^ready = \{ http = .*\}", text, re.M) and re.search(r"^depends_on = \{ server = \"ready\" \}", text, re.M)
    assert "[process.server.ready]" not in text and text.count("cmd = ") == 3

    again = project.run("init")
    assert again.returncode == 2 and "exists; use --force" in again.stderr
    project.manifest.write_text("# mine\n")
    assert project.run("init", "--force").returncode == 0
    assert project.manifest.read_text() == text


def test_init_example_writes_the_demo_and_refuses_to_overwrite(project: Project) -> None:
    """1. `init --example` writes the repository's examples/ demo — its manifest
       and every script — into the current directory, byte for byte.
    2. Run again, it names what exists, exits 2 and changes nothing, even when
       only one of the files is there; --force overwrites.
    3. It never writes through a symlink, --force or not."""
    result = project.run("init", "--example")
    assert result.returncode == 0, result.stderr
    shipped = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".toml", ".py"))
    assert "procfile.toml" in shipped and len(shipped) >= 2
    written = sorted(p.name for p in project.root.iterdir() if p.is_file())
    assert written == shipped
    for name in shipped:
        assert (project.root / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
    assert project.run("check").returncode == 0

    for name in shipped:
        if name != "procfile.toml":
            (project.root / name).unlink()
    project.manifest.write_text("# mine\n")
    refused = project.run("init", "--example")
    assert refused.returncode == 2 and refused.stderr.startswith("procctl: procfile.toml already exists")
    assert len(refused.stderr.splitlines()) == 1 and "--force" in refused.stderr
    assert project.manifest.read_text() == "# mine\n"
    assert sorted(p.name for p in project.root.iterdir() if p.is_file()) == ["procfile.toml"]
    assert project.run("init", "--example", "--force").returncode == 0
    assert project.manifest.read_bytes() == (EXAMPLES / "procfile.toml").read_bytes()

    victim = project.root / "victim.txt"
    victim.write_text("keep\n")
    project.manifest.unlink()
    project.manifest.symlink_to(victim)
    through = project.run("init", "--force")
    assert through.returncode == 2 and "symlink" in through.stderr and "Traceback" not in through.stderr
    assert victim.read_text() == "keep\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_example_runs_with_python_alone(project: Project) -> None:
    """1. `init --example -f demo/procfile.toml` writes the demo into demo/.
    2. With its two ports moved to free ones (so that a second copy of the
       suite can run beside this one), `procctl run` runs it to the end:
       exit 0, every instance exited 0, the flaky job restarted once."""
    (project.root / "demo").mkdir()
    assert project.run("init", "--example", "-f", "demo/procfile.toml").returncode == 0
    manifest = project.root / "demo" / "procfile.toml"
    text = manifest.read_text()
    assert "54329" in text and "8731" in text
    manifest.write_text(text.replace("54329", str(_free_port())).replace("8731", str(_free_port())))
    result = project.run("run", "--plain", "--json", "-f", str(manifest), timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0 and len(summary["instances"]) == 11
    assert {(row["name"], row["exit_code"]) for row in summary["instances"]} == {
        *((name, 0) for name in ("db", "web", "flaky")),
        *((f"thumbs[{i}]", 0) for i in range(1, 9)),
    }
    assert next(row["restarts"] for row in summary["instances"] if row["name"] == "flaky") == 1

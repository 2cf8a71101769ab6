"""Every `--json` output is one object on stdout with a `version`, laid out
as its JSON Schema in docs/schemas/ says, and a state is one token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import typer.main
from conftest import Project

from procctl.cli import app
from procctl.states import State

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"


def _schema(name: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema  # type: ignore[no-any-return]


def _valid(name: str, stdout: str) -> dict[str, Any]:
    """stdout parsed whole (nothing else on it), and valid against its schema."""
    document = json.loads(stdout)
    jsonschema.validate(document, _schema(name))
    assert next(iter(document)) == "version" and document["version"] == 1
    return document  # type: ignore[no-any-return]


def _json_commands() -> list[str]:
    group = typer.main.get_command(app)
    return [name for name, command in group.commands.items() if any("--json" in getattr(p, "opts", []) for p in command.params)]  # type: ignore[attr-defined]


def test_every_json_output_has_a_schema_and_is_documented() -> None:
    doc = (ROOT / "docs" / "json.md").read_text()
    commands = _json_commands()
    assert {"run", "check", "status", "history", "benchmark", "shm"} <= set(commands)
    for command in [*commands, "benchmark-spawn"]:
        schema = _schema(command)
        assert schema["properties"]["version"] == {"const": 1, "description": schema["properties"]["version"]["description"]}
        assert "version" in schema["required"]
        assert f"{command}.schema.json" in doc, f"docs/json.md does not list {command}'s schema"
    assert sorted(path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json")) == sorted([*commands, "benchmark-spawn"])


def test_the_schemas_know_every_state_as_a_token() -> None:
    tokens = [state.value for state in State]
    assert all(" " not in token for token in tokens)
    assert {"timed_out", "limit_exceeded"} <= set(tokens)
    for name, rows in (("run", "instances"), ("status", "instances"), ("history", "runs")):
        assert _schema(name)["properties"][rows]["items"]["properties"]["state"]["enum"] == tokens, name


def test_a_supervisors_json_outputs_match_their_schemas(project: Project) -> None:
    project.write("""
        [process.web]
        cmd = "sleep 120"
        replicas = 2
        [process.job]
        cmd = "echo {item}"
        each = ["a", "b"]
        [shared.table]
        size = "4KiB"
    """)
    assert project.run("up", "-d").returncode == 0
    try:
        status = _valid("status", project.run("status", "--json").stdout)
        assert {row["state"] for row in status["instances"] if row["process"] == "web"} <= {"running", "starting"}
        for name, args in (
            ("pause", ("web",)),
            ("resume", ("web",)),
            ("restart", ("web.1",)),
            ("start", ("web",)),
            ("scale", ("web=3",)),
            ("send", ("web", "hello")),
            ("limits", ("web",)),
            ("kill", ("web.3",)),
            ("kill", ("web.2", "--signal", "CONT")),
        ):
            result = project.run(name, *args, "--json")
            assert result.returncode == 0, (name, result.stderr)
            _valid(name, result.stdout)
        reloaded = project.run("reload", "--dry-run", "--json")
        assert reloaded.returncode == 0, reloaded.stderr
        assert _valid("reload", reloaded.stdout)["dry_run"] is True
        regions = _valid("shm", project.run("shm", "ls", "--json").stdout)
        assert [region["name"] for region in regions["regions"]] == ["table"]
    finally:
        assert project.run("down").returncode == 0
    _valid("check", project.run("check", "--json").stdout)
    history = _valid("history", project.run("history", "--json").stdout)
    assert {row["instance"] for row in history["runs"]} >= {"job[1]", "job[2]"}


def test_a_timed_out_run_is_timed_out_in_every_json_and_timed_out_in_tables(project: Project) -> None:
    project.write("""
        [settings]
        fail_fast = false
        [process.slow]
        cmd = "sleep 60"
        timeout = "300ms"
        [process.quick]
        cmd = "true"
    """)
    result = project.run("run", "--plain", "--json")
    assert result.returncode == 1
    summary = _valid("run", result.stdout)
    assert {row["name"]: row["state"] for row in summary["instances"]} == {"slow": "timed_out", "quick": "exited"}
    assert "timed out" in result.stderr  # the human lines, on stderr
    history = _valid("history", project.run("history", "--json").stdout)
    assert [row["state"] for row in history["runs"] if row["process"] == "slow"] == ["timed_out"]
    table = project.run("history")
    assert "timed out" in table.stdout and "timed_out" not in table.stdout


def test_benchmark_json_outputs_match_their_schemas(project: Project) -> None:
    timed = project.run("benchmark", "--runs", "2", "true", "exit 0", "--json")
    assert timed.returncode == 0, timed.stderr
    assert [row["command"] for row in _valid("benchmark", timed.stdout)["results"]] == ["true", "exit 0"]
    exported = project.run("benchmark", "--runs", "1", "true", "--export-json", "out.json")
    assert exported.returncode == 0, exported.stderr
    _valid("benchmark", (project.root / "out.json").read_text())
    spawned = project.run("benchmark", "--spawn", "--tasks", "5", "--runs", "1", "--json")
    assert spawned.returncode == 0, spawned.stderr
    assert _valid("benchmark-spawn", spawned.stdout)["jobs"] == 5


def test_an_old_history_reads_its_states_as_tokens(project: Project) -> None:
    """A state.db written when states had spaces reads as tokens."""
    import sqlite3

    project.write('[process.slow]\ncmd = "sleep 60"\ntimeout = "200ms"\n')
    assert project.run("run", "--plain").returncode == 1
    database = project.root / ".procctl" / "state.db"
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE runs SET status = 'timed out'")
    history = _valid("history", project.run("history", "--json").stdout)
    assert [row["state"] for row in history["runs"]] == ["timed_out"]

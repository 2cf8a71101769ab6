"""CI-grade reporting of `procctl run`: grouped output, GitHub Actions
markers, the --events stream against its documented schema, --timeout, and
picking processes with --only / --except / --no-deps. JUnit XML is in
test_junit_schema.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import PY, Project, marked_pids, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"

HEADER = re.compile(r"^=== (\S+) (exited|failed|killed|timed out|limit exceeded|stopped) with ")


def _blocks(stdout: str) -> dict[str, list[str]]:
    """Grouped output → {instance: the lines of its block}; fails on a line
    outside any block or a block seen twice."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.split("procctl summary")[0].splitlines():
        header = HEADER.match(line)
        if header:
            assert header.group(1) not in blocks, f"two blocks for {header.group(1)}"
            current = blocks.setdefault(header.group(1), [])
        else:
            assert current is not None, f"a line before any block: {line!r}"
            current.append(line)
    return blocks


def _interleaving_jobs(project: Project, count: int, lines: int) -> None:
    # Every job writes a line every 10 ms, all at once: interleaved output
    # would mix them line by line.
    project.write(f"""
        [settings]
        max_parallel = {count}
        [process.job]
        cmd = "for i in $(seq 1 {lines}); do echo \\"job {{item}} line $i\\"; sleep 0.01; done"
        each = {{ range = [1, {count}] }}
    """)


def test_grouped_blocks_are_contiguous_and_complete(project: Project) -> None:
    _interleaving_jobs(project, 20, 30)
    result = project.run("run", "--output", "grouped")
    assert result.returncode == 0, result.stderr
    blocks = _blocks(result.stdout)
    assert sorted(blocks) == sorted(f"job[{n}]" for n in range(1, 21))
    for n in range(1, 21):
        assert blocks[f"job[{n}]"] == [f"job {n} line {i}" for i in range(1, 31)]
    assert "::group::" not in result.stdout
    # Interleaved (the default) does mix them: the grouping is the work.
    mixed = project.run("run")
    body = [line.split("| ", 1)[1] for line in mixed.stdout.splitlines() if "| job " in line]
    assert body != sorted(body, key=lambda text: int(text.split()[1]))


def test_github_actions_markers_only_under_github_actions(project: Project) -> None:
    project.write(f"""
        [settings]
        fail_fast = false
        [process.good]
        cmd = "echo fine"
        [process.bad]
        cmd = "echo '::warning::from the job'; echo broken; exit 4"
    """)
    plain = project.run("run", "--output", "grouped", env={"GITHUB_ACTIONS": "false"})
    assert plain.returncode == 1
    assert "::group::" not in plain.stdout and "::error" not in plain.stdout
    assert "=== bad failed with code 4" in plain.stdout

    github = project.run("run", "--output", "grouped", env={"GITHUB_ACTIONS": "true"})
    assert github.returncode == 1
    lines = github.stdout.splitlines()
    groups = [line for line in lines if line.startswith("::group::")]
    assert len(groups) == 2
    assert any(g.startswith("::group::bad failed with code 4 after ") for g in groups)
    assert any(g.startswith("::group::good exited with code 0 after ") for g in groups)
    assert lines.count("::endgroup::") == 2
    # The job's own '::warning::' is fenced so the runner does not obey it.
    start = lines.index("::warning::from the job")
    fence = next(line for line in reversed(lines[:start]) if line.startswith("::stop-commands::"))
    token = fence.removeprefix("::stop-commands::")
    assert f"::{token}::" in lines[start:]
    errors = [line for line in lines if line.startswith("::error")]
    assert len(errors) == 1 and "bad failed 4" in errors[0] and "bad.log" in errors[0]
    # Interleaved output gets the ::error:: annotation too, and no groups.
    interleaved = project.run("run", env={"GITHUB_ACTIONS": "true"})
    assert "::group::" not in interleaved.stdout
    assert sum(line.startswith("::error") for line in interleaved.stdout.splitlines()) == 1


def _schema() -> dict[str, Any]:
    text = (DOCS / "events.md").read_text()
    block = re.search(r"```json\n(.*?)\n```", text, re.S)
    assert block, "docs/events.md has no JSON schema block"
    return json.loads(block.group(1))


_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None), "object": dict}


def _type_ok(value: Any, wanted: str | list[str]) -> bool:
    for name in [wanted] if isinstance(wanted, str) else wanted:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, _TYPES[name]):
            return True
    return False


def _valid(record: Any, schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    """The subset of JSON Schema the document uses: oneOf, $ref, type,
    const, enum, required, properties, additionalProperties: false."""
    if "$ref" in schema:
        return _valid(record, defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "oneOf" in schema:
        return sum(_valid(record, option, defs) for option in schema["oneOf"]) == 1
    if "type" in schema and not _type_ok(record, schema["type"]):
        return False
    if "const" in schema and record != schema["const"]:
        return False
    if "enum" in schema and record not in schema["enum"]:
        return False
    if isinstance(record, dict):
        if any(key not in record for key in schema.get("required", [])):
            return False
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False and any(key not in properties for key in record):
            return False
        return all(_valid(record[key], sub, defs) for key, sub in properties.items() if key in record)
    return True


def test_schema_checker_rejects_what_the_schema_forbids() -> None:
    schema = _schema()
    good = {"ts": 1.5, "event": "exited", "name": "a", "instance": "a", "status": "failed", "code": 1, "signal": None, "duration": 0.2}
    assert _valid(good, schema, schema["$defs"])
    assert not _valid({**good, "code": "1"}, schema, schema["$defs"])
    assert not _valid({**good, "extra": 1}, schema, schema["$defs"])
    assert not _valid({key: v for key, v in good.items() if key != "duration"}, schema, schema["$defs"])
    assert not _valid({**good, "event": "exploded"}, schema, schema["$defs"])


def test_event_stream_of_a_real_run_validates_against_the_schema(project: Project) -> None:
    project.write(f"""
        [settings]
        fail_fast = false
        metrics_interval = "100ms"
        [process.db]
        cmd = "echo db ready; sleep 1.5"
        ready = {{ log = "db ready", timeout = "20s" }}
        [process.app]
        cmd = "echo app up; echo oops >&2; sleep 0.5"
        depends_on = {{ db = "ready" }}
        [process.flaky]
        cmd = "echo try; exit 1"
        restart = "on-failure"
        max_restarts = 1
        [process.after]
        cmd = "echo never"
        depends_on = {{ flaky = "succeeded" }}
        [process.hog]
        cmd = ["{PY}", "-c", "import time; b = bytearray(b'x' * (200 << 20)); time.sleep(30)"]
        limits = {{ memory = "64MiB" }}
        [process.sleeper]
        cmd = "while [ ! -e released ]; do sleep 0.05; done"
    """)
    events_file = project.root / "run.jsonl"
    proc = project.start("run", "--events", str(events_file))

    def kinds() -> set[str]:
        return {json.loads(line)["event"] for line in events_file.read_text().splitlines() if line.strip()} if events_file.exists() else set()

    def sleeper_started() -> bool:
        return events_file.exists() and any('"event": "started", "name": "sleeper"' in line for line in events_file.read_text().splitlines())

    wait_until(sleeper_started, timeout=30, what="sleeper to start")
    assert project.run("pause", "sleeper").returncode == 0
    assert project.run("resume", "sleeper").returncode == 0
    # Held until paused and resumed, however slow the machine.
    (project.root / "released").touch()
    assert proc.wait(timeout=60) == 1
    schema = _schema()
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    bad = [record for record in records if not _valid(record, schema, schema["$defs"])]
    assert not bad, f"records outside the schema: {bad[:3]}"
    wanted = {"queued", "started", "ready", "output", "exited", "restarting", "skipped", "paused", "resumed", "limit_exceeded", "metrics", "state"}
    assert wanted <= kinds(), f"missing kinds: {wanted - kinds()}"
    outputs = [(r["instance"], r["stream"], r["line"]) for r in records if r["event"] == "output"]
    assert ("app", "stdout", "app up") in outputs and ("app", "stderr", "oops") in outputs
    assert [r["attempt"] for r in records if r["event"] == "restarting" and r["name"] == "flaky"] == [1]
    over = next(r for r in records if r["event"] == "limit_exceeded")
    assert over["instance"] == "hog" and over["limit"] == "memory" and over["maximum"] == 64 << 20
    # The watchdog reports the RSS it saw past the limit; a cgroup, the peak it held the tree to.
    if over["mechanism"] == "watchdog":
        assert over["value"] > 64 << 20
    else:
        assert over["mechanism"].startswith("cgroup v") and 0 < over["value"] <= 64 << 20
    flaky_exits = [r for r in records if r["event"] == "exited" and r["name"] == "flaky"]
    assert [(r["status"], r["code"]) for r in flaky_exits] == [("failed", 1), ("failed", 1)]
    # A run's output comes before its exit.
    app_lines = [i for i, r in enumerate(records) if r["instance"] == "app" and r["event"] == "output"]
    app_exit = next(i for i, r in enumerate(records) if r["instance"] == "app" and r["event"] == "exited")
    assert max(app_lines) < app_exit


def test_events_to_stdout_moves_the_human_output_to_stderr(project: Project) -> None:
    project.write("""
        [process.a]
        cmd = "echo hello"
    """)
    result = project.run("run", "--events", "-")
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"ts", "event", "name", "instance"} <= set(records[0])
    assert any(r["event"] == "output" and r["line"] == "hello" for r in records)
    assert "procctl summary" in result.stderr
    bad = project.run("run", "--events", str(project.root / "no" / "such" / "dir.jsonl"))
    assert bad.returncode == 2 and bad.stderr.startswith("procctl: --events ") and "Traceback" not in bad.stderr


def test_timeout_exits_124_and_leaves_no_process(project: Project) -> None:
    project.write("""
        [settings]
        max_parallel = 8
        [process.tree]
        cmd = "sleep 600 & sleep 600 & wait"
        replicas = 3
        [process.stubborn]
        cmd = "trap '' TERM; sleep 600 & wait; sleep 600"
        stop_timeout = "500ms"
    """)
    result = project.run("run", "--timeout", "2s", timeout=60)
    assert result.returncode == 124
    for name in ("tree.1", "tree.2", "tree.3", "stubborn"):
        assert re.search(rf"{re.escape(name)} started with pid", result.stdout), result.stdout
    assert "timeout" in result.stdout
    # Every process of every tree carried this test's marker in its environment.
    assert marked_pids(project.marker) == []


def _ran(result_stdout: str) -> set[str]:
    return {line.split()[1] for line in result_stdout.splitlines() if line.startswith("=== ")}


def test_only_except_and_no_deps(project: Project) -> None:
    project.write("""
        [process.db]
        cmd = "echo db"
        [process.api]
        cmd = "echo api"
        depends_on = ["db"]
        [process.web]
        cmd = "echo web"
        depends_on = ["api"]
        [process.docs]
        cmd = "echo docs"
    """)
    assert _ran(project.run("run", "--output", "grouped", "--only", "web").stdout) == {"db", "api", "web"}
    assert _ran(project.run("run", "--output", "grouped", "--only", "web,docs", "--no-deps").stdout) == {"web", "docs"}
    assert _ran(project.run("run", "--output", "grouped", "--only", "api", "--only", "docs").stdout) == {"db", "api", "docs"}
    assert _ran(project.run("run", "--output", "grouped", "--except", "db").stdout) == {"api", "web", "docs"}
    assert _ran(project.run("run", "--output", "grouped", "--only", "web", "--except", "api").stdout) == {"web"}
    unknown = project.run("run", "--only", "nope")
    assert unknown.returncode == 2 and "unknown process 'nope'" in unknown.stderr
    empty = project.run("run", "--except", "db,api,web,docs")
    assert empty.returncode == 2 and "nothing left to run" in empty.stderr

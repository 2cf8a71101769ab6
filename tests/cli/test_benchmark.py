"""`procctl benchmark` through the real binary: exports, failures, the pool,
manifest processes, the spawn self-benchmark and the run history."""

from __future__ import annotations

import csv
import json
import re

from conftest import Project

RUN_FIELDS = {"index", "started_at", "ended_at", "time_wall_s", "time_user_s", "time_system_s", "memory_peak_bytes", "exit_code", "signal"}
COMMAND_FIELDS = {
    "command", "mean", "stddev", "median", "user", "system", "min", "max", "times", "memory_usage_byte", "exit_codes",
    "p95", "runs", "outliers", "peak_rss_bytes", "elapsed_s", "runs_per_s", "relative", "relative_stddev",
    "name", "process", "argv", "run_figures",
}  # fmt: skip


def _ok(result: object) -> None:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_exports_hold_every_field_of_every_run(project: Project) -> None:
    """1. Two commands, three runs each, all three exports and the table.
    2. JSON holds every figure of every run; Markdown a row per command; CSV a row per run."""
    result = project.run(
        "benchmark", "--runs", "3", "--export-json", "out.json", "--export-markdown", "out.md", "--export-csv", "out.csv",
        "--", "sleep 0.05", "true",
    )  # fmt: skip
    _ok(result)
    assert "mean ± σ" in result.stdout and "p95" in result.stdout and "relative" in result.stdout
    data = json.loads((project.root / "out.json").read_text())
    # `true` can take no measurable time once the shell's start-up is
    # subtracted: then there is no ratio to give, and a warning says so.
    zero_time = data["results"][1]["mean"] == 0
    assert "inf" not in result.stdout
    if zero_time:
        assert "times faster" not in result.stdout and "no relative speeds: 'true'" in result.stderr
    else:
        assert re.search(r"'true' ran\n\s+\d+\.\d\d ± \d+\.\d\d times faster than 'sleep 0.05'", result.stdout), result.stdout

    assert data["parallel"] == 1 and data["shell"] == "sh" and data["failure"] is None
    assert data["shell_spawn_s"]["wall"] > 0
    assert [r["command"] for r in data["results"]] == ["sleep 0.05", "true"]
    for entry in data["results"]:
        assert set(entry) == COMMAND_FIELDS
        assert entry["runs"] == 3 and len(entry["run_figures"]) == 3 and len(entry["times"]) == 3
        assert entry["min"] <= entry["median"] <= entry["p95"] <= entry["max"]
        assert entry["min"] <= entry["mean"] <= entry["max"]
        assert entry["stddev"] is not None and entry["runs_per_s"] > 0
        assert entry["exit_codes"] == [0, 0, 0]
        assert entry["times"] == [run["time_wall_s"] for run in entry["run_figures"]]
        assert entry["memory_usage_byte"] == [run["memory_peak_bytes"] for run in entry["run_figures"]]
        for run in entry["run_figures"]:
            assert set(run) == RUN_FIELDS
            assert run["exit_code"] == 0 and run["signal"] is None
            assert run["ended_at"] >= run["started_at"] and run["time_wall_s"] >= 0
            assert run["time_user_s"] is not None and run["time_system_s"] is not None
    sleep, true = data["results"]
    # Less the mean shell start-up, a run of `sleep 0.05` can come out a hair
    # under 50 ms when that start-up varies (a loaded machine).
    assert sleep["mean"] >= 0.045
    if zero_time:
        assert sleep["relative"] is None and true["relative"] is None
    else:
        assert sleep["relative"] > 1 and sleep["relative_stddev"] is not None
        assert true["relative"] == 1.0 and true["relative_stddev"] is None
    # A run of 50 ms outlives a 50 ms sampling interval at least once in three.
    assert sleep["peak_rss_bytes"] is not None and sleep["peak_rss_bytes"] > 0

    markdown = (project.root / "out.md").read_text().splitlines()
    assert markdown[0].startswith("| Command | Mean [") and len(markdown) == 4
    assert markdown[2].startswith("| `sleep 0.05` |") and markdown[3].startswith("| `true` |")
    assert markdown[3].rstrip().endswith("| - |" if zero_time else "| 1.00 |")

    with (project.root / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["command"] for row in rows] == ["sleep 0.05", "true"]
    for row, entry in zip(rows, data["results"]):
        for field in ("mean", "stddev", "median", "user", "system", "min", "max", "p95", "runs_per_s"):
            assert float(row[field]) == entry[field], field
        assert row["runs"] == "3" and int(row["peak_rss_bytes"] or 0) == (entry["peak_rss_bytes"] or 0)


def test_a_failing_command_fails_the_benchmark(project: Project) -> None:
    """1. `sh -c 'exit 3'` fails: exit 1 and one line naming the exit code.
    2. The failed run is in the history; no export file is left behind.
    3. With --ignore-failure the same command is timed and its exit codes reported."""
    failed = project.run("benchmark", "--runs", "3", "--export-json", "out.json", "sh -c 'exit 3'")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("procctl: ") and "exited with code 3" in lines[0]
    assert "--ignore-failure" in lines[0]
    assert not (project.root / "out.json").exists()
    history = json.loads(project.run("history", "--json").stdout)["runs"]
    assert history and history[0]["state"] == "failed" and history[0]["exit_code"] == 3

    kept = project.run("benchmark", "--runs", "3", "--ignore-failure", "--json", "sh -c 'exit 3'")
    _ok(kept)
    entry = json.loads(kept.stdout)["results"][0]
    assert entry["exit_codes"] == [3, 3, 3] and entry["runs"] == 3
    assert "3 of 3 runs failed" in kept.stderr


def test_four_in_flight_make_two_waves(project: Project) -> None:
    """1. `sleep 0.2` × 8 runs with -j 4.
    2. The first four starts all come before any of them ended (they ran together).
    3. The fifth start comes after one of the first four ended (the pool was full):
       two waves, read from the recorded times, not from a clock bound."""
    result = project.run("benchmark", "--runs", "8", "-j", "4", "--export-json", "out.json", "sleep 0.2")
    _ok(result)
    entry = json.loads((project.root / "out.json").read_text())["results"][0]
    runs = sorted(entry["run_figures"], key=lambda run: run["started_at"])
    assert len(runs) == 8
    first_wave, second_wave = runs[:4], runs[4:]
    first_end = min(run["ended_at"] for run in first_wave)
    assert max(run["started_at"] for run in first_wave) < first_end
    assert all(run["started_at"] >= first_end for run in second_wave)
    # In each wave's place the next one could start only as a slot freed.
    ends = sorted(run["ended_at"] for run in runs)
    for number, run in enumerate(second_wave):
        assert run["started_at"] >= ends[number]
    assert "runs (-j 4)" in result.stdout


def test_a_manifest_process_runs_with_its_env_and_cwd(project: Project) -> None:
    """1. -p greet runs the manifest's command in its cwd with its env (manifest and process).
    2. Each run wrote its line there; history rows carry the manifest and process name."""
    (project.root / "sub").mkdir()
    project.write("""
        [env]
        SHARED = "from-manifest"
        [process.greet]
        cmd = "printf '%s %s\\n' \\"$GREETING\\" \\"$SHARED\\" >> out.txt"
        cwd = "sub"
        env = { GREETING = "hello" }
    """)
    result = project.run("benchmark", "--process", "greet", "--runs", "2", "--json")
    _ok(result)
    assert (project.root / "sub" / "out.txt").read_text() == "hello from-manifest\n" * 2
    entry = json.loads(result.stdout)["results"][0]
    assert entry["process"] == "greet" and entry["name"] == "greet"
    rows = json.loads(project.run("history", "--json", "greet").stdout)["runs"]
    assert len(rows) == 2
    assert all(row["manifest"] == str(project.manifest) and row["instance"] == "bench" for row in rows)

    unknown = project.run("benchmark", "--process", "nope", "--runs", "1")
    assert unknown.returncode == 2 and "nope" in unknown.stderr and "greet" in unknown.stderr


def test_history_gets_a_row_per_timed_run(project: Project) -> None:
    """1. Two warmups and three timed runs of an ad-hoc command.
    2. `procctl history` lists the three timed runs under the manifest 'benchmark'."""
    _ok(project.run("benchmark", "--warmup", "2", "--runs", "3", "true"))
    rows = json.loads(project.run("history", "--json").stdout)["runs"]
    assert len(rows) == 3
    for row in rows:
        assert (row["manifest"], row["process"], row["instance"], row["state"]) == ("benchmark", "true", "bench", "exited")
        assert row["exit_code"] == 0 and row["cpu_time_s"] is not None
    table = project.run("history")
    _ok(table)
    assert "bench" in table.stdout


def test_prepare_runs_before_each_run_and_shell_none_execs(project: Project) -> None:
    """1. --prepare writes 'p', the command 'r', to one file: the order is p r p r p r.
    2. --shell none splits the line and execs it (no shell between)."""
    result = project.run("benchmark", "--runs", "3", "--prepare", "echo p >> order.txt", "echo r >> order.txt")
    _ok(result)
    assert (project.root / "order.txt").read_text().split() == ["p", "r"] * 3

    direct = project.run("benchmark", "--runs", "2", "--shell", "none", "--json", "sh -c 'exit 0'")
    _ok(direct)
    data = json.loads(direct.stdout)
    assert data["shell"] == "none" and data["shell_spawn_s"] is None
    assert data["results"][0]["argv"] == ["sh", "-c", "exit 0"]


def test_adaptive_run_count(project: Project) -> None:
    """--min-runs and --max-time: at least the minimum, more while time is left."""
    result = project.run("benchmark", "--min-runs", "3", "--max-time", "300ms", "--json", "sleep 0.05")
    _ok(result)
    runs = json.loads(result.stdout)["results"][0]["runs"]
    assert runs >= 3


def test_usage_errors_are_one_line(project: Project) -> None:
    """Nothing to time, a bad export path, --runs with --min-runs: exit 2, one line, nothing run."""
    for args in (
        ("benchmark",),
        ("benchmark", "--export-json", "no/such/dir/out.json", "true"),
        ("benchmark", "--runs", "3", "--min-runs", "2", "true"),
        ("benchmark", "--spawn", "true"),
    ):
        result = project.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (project.root / ".procctl").exists()


def test_spawn_prints_the_ratio_to_xargs(project: Project) -> None:
    """--spawn --tasks 50: procctl run and xargs -P on the same 50 jobs, and their ratio."""
    result = project.run("benchmark", "--spawn", "--tasks", "50", "--runs", "1")
    _ok(result)
    assert "procctl run -j 8" in result.stdout and "xargs -P 8" in result.stdout
    match = re.search(r"ratio procctl/xargs: (\d+\.\d\d)", result.stdout)
    assert match and float(match.group(1)) > 0

"""`benchmark --export-json` and `--export-csv` in hyperfine's layout: read
as hyperfine's exports are read, and beside real hyperfine's own when it is
installed."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
from typing import Any

import pytest
from conftest import Project

# hyperfine's JSON export: {"results": [...]}, each result the fields of its
# BenchmarkResult (src/benchmark/benchmark_result.rs in hyperfine 1.x), in
# seconds. `stddev` is absent (null) for a single run; `parameters` is left
# out when empty; `memory_usage_byte` is written by newer versions only.
HYPERFINE_RESULT: dict[str, tuple[type, ...]] = {
    "command": (str,),
    "mean": (float,),
    "stddev": (float, type(None)),
    "median": (float,),
    "user": (float,),
    "system": (float,),
    "min": (float,),
    "max": (float,),
    "times": (list,),
    "exit_codes": (list,),
}
HYPERFINE_OPTIONAL: dict[str, tuple[type, ...]] = {"memory_usage_byte": (list,), "parameters": (dict,)}
# hyperfine's CSV export (src/export/csv.rs): this header, one row per command.
HYPERFINE_CSV_HEADER = ["command", "mean", "stddev", "median", "user", "system", "min", "max"]


def _number(value: object) -> bool:
    # JSON has one number type: hyperfine writes 0 where a float is 0.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_as_hyperfine_does(text: str) -> list[dict[str, Any]]:
    """What hyperfine's scripts do with an export (scripts/advanced_statistics.py,
    plot_whisker.py, welch_ttest.py): `json.load(f)["results"]`, then each
    result's "command" and "times"; checked against the schema above."""
    results = json.loads(text)["results"]
    for result in results:
        for key, types in {**HYPERFINE_RESULT, **{k: v for k, v in HYPERFINE_OPTIONAL.items() if k in result}}.items():
            value = result[key]
            assert isinstance(value, types) or (float in types and _number(value)), (key, value)
        assert all(_number(t) for t in result["times"])
        assert all(isinstance(code, int) for code in result["exit_codes"])
        assert len(result["exit_codes"]) == len(result["times"])
    return results


def _read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(text.splitlines())
    return list(reader.fieldnames or []), list(reader)


def test_json_export_reads_as_hyperfines(project: Project) -> None:
    """1. Two commands, four runs each, JSON and CSV exports.
    2. The JSON has hyperfine's keys and types, and its figures are those of its
       own `times`, as hyperfine's statistics script computes them.
    3. The CSV starts with hyperfine's header, one row per command, and its
       columns are the JSON's figures."""
    result = project.run("benchmark", "--runs", "4", "--export-json", "out.json", "--export-csv", "out.csv", "--", "sleep 0.02", "true")
    assert result.returncode == 0, result.stderr
    results = _read_as_hyperfine_does((project.root / "out.json").read_text())
    assert [b["command"] for b in results] == ["sleep 0.02", "true"]
    for b in results:
        times = b["times"]
        assert len(times) == 4 and b["exit_codes"] == [0, 0, 0, 0]
        assert b["mean"] == pytest.approx(statistics.mean(times))
        assert b["stddev"] == pytest.approx(statistics.stdev(times))
        assert b["median"] == pytest.approx(statistics.median(times))
        assert (b["min"], b["max"]) == (min(times), max(times))
        assert b["p95"] == pytest.approx(statistics.quantiles(times, n=20, method="inclusive")[-1])
        assert b["user"] >= 0 and b["system"] >= 0

    header, rows = _read_csv((project.root / "out.csv").read_text())
    assert header[: len(HYPERFINE_CSV_HEADER)] == HYPERFINE_CSV_HEADER
    assert "p95" in header[len(HYPERFINE_CSV_HEADER) :] and "peak_rss_bytes" in header
    assert [row["command"] for row in rows] == ["sleep 0.02", "true"]
    for row, b in zip(rows, results):
        for field in HYPERFINE_CSV_HEADER[1:]:
            assert float(row[field]) == b[field], field


def test_exit_codes_and_a_single_run_as_hyperfine_writes_them(project: Project) -> None:
    """1. A command killed by SIGKILL, timed with --ignore-failure: each exit
       code is 128 + 9, as hyperfine reports a signal.
    2. One run: stddev is null in the JSON and empty in the CSV."""
    killed = project.run("benchmark", "--runs", "2", "--ignore-failure", "--export-json", "-", "kill -9 $$")
    assert killed.returncode == 0, killed.stderr
    (b,) = _read_as_hyperfine_does(killed.stdout)
    assert b["exit_codes"] == [137, 137]
    assert [run["signal"] for run in b["run_figures"]] == [9, 9]

    once = project.run("benchmark", "--runs", "1", "--export-json", "out.json", "--export-csv", "out.csv", "true")
    assert once.returncode == 0, once.stderr
    (b,) = _read_as_hyperfine_does((project.root / "out.json").read_text())
    assert b["stddev"] is None and len(b["times"]) == 1
    _, rows = _read_csv((project.root / "out.csv").read_text())
    assert rows[0]["stddev"] == "" and float(rows[0]["mean"]) == b["mean"]


@pytest.mark.skipif(shutil.which("hyperfine") is None, reason="hyperfine is not installed")
def test_same_fields_as_real_hyperfine(project: Project) -> None:
    """1. hyperfine and procctl benchmark time the same two commands, 3 runs each.
    2. Every key of hyperfine's JSON results is in ours, with a value of the same kind.
    3. hyperfine's CSV header is the start of ours, and both have a row per command."""
    commands = ["true", "sleep 0.01"]
    theirs = subprocess.run(
        ["hyperfine", "--runs", "3", "--style", "none", "--export-json", "h.json", "--export-csv", "h.csv", *commands],
        cwd=project.root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    ours = project.run("benchmark", "--runs", "3", "--export-json", "p.json", "--export-csv", "p.csv", "--", *commands)
    assert ours.returncode == 0, ours.stderr

    their_results = json.loads((project.root / "h.json").read_text())["results"]
    our_results = _read_as_hyperfine_does((project.root / "p.json").read_text())
    assert [r["command"] for r in our_results] == [r["command"] for r in their_results] == commands
    for their, our in zip(their_results, our_results):
        missing = set(their) - set(our)
        assert not missing, missing
        for key, value in their.items():
            if _number(value):
                assert _number(our[key]), key
            else:
                assert type(our[key]) is type(value), key
        assert len(our["times"]) == len(their["times"]) and our["exit_codes"] == their["exit_codes"]

    their_header, their_rows = _read_csv((project.root / "h.csv").read_text())
    our_header, our_rows = _read_csv((project.root / "p.csv").read_text())
    assert their_header == HYPERFINE_CSV_HEADER
    assert our_header[: len(their_header)] == their_header
    assert [row["command"] for row in our_rows] == [row["command"] for row in their_rows] == commands

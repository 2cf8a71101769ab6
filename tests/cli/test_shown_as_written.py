"""What procctl shows of its user's text (a command, a path, a benchmark's
command line) is shown as written, coloured or not: rich markup and emoji
codes in it are text, so a manifest cannot hide part of a command from
`check`, and `[/x]` in one is not an error."""

from __future__ import annotations

import re

from conftest import Project

HIDING = "echo safe [a; touch hidden ]"
CLOSING = "echo [/x] [bold]b[/bold] :smile:"


def _text(output: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def test_check_shows_every_command_whole(project: Project) -> None:
    project.write(f'[process.a]\ncmd = "{HIDING}"\n[process.b]\ncmd = "{CLOSING}"\n')
    for colours in ({}, {"FORCE_COLOR": "1", "COLUMNS": "200"}):
        shown = project.run("check", env=colours)
        assert shown.returncode == 0 and shown.stderr == "", shown
        assert HIDING in _text(shown.stdout) and CLOSING in _text(shown.stdout), shown.stdout


def test_benchmark_names_its_command_as_written(project: Project) -> None:
    timed = project.run("benchmark", "--runs", "1", "--", CLOSING, env={"COLUMNS": "200"})
    assert timed.returncode == 0 and "Traceback" not in timed.stderr, timed
    assert f"#1 {CLOSING}" in _text(timed.stdout), timed.stdout


def test_status_of_a_project_in_a_bracketed_directory(project: Project) -> None:
    odd = project.root / "d[/x] [bold]"
    odd.mkdir(parents=True)
    manifest = project.write('[process.a]\ncmd = "sleep 30"\n', name="d[/x] [bold]/procfile.toml")
    try:
        assert project.run("up", "-d", "-f", str(manifest)).returncode == 0
        shown = project.run("status", "-f", str(manifest), env={"COLUMNS": "300"})
        assert shown.returncode == 0, shown
        # (The title folds between words to the table's width.)
        assert " ".join(str(manifest).split()) in " ".join(_text(shown.stdout).split()), shown.stdout
    finally:
        project.run("down", "-f", str(manifest))

"""check, init, import, and bad input at the command line."""

from __future__ import annotations

import json

from conftest import Project


def test_bad_manifest_is_one_line_exit_2_and_nothing_starts(project: Project) -> None:
    project.write("""
        [process.ok]
        cmd = "touch started"
        [process.web]
        cmd = "x"
        restrat = "always"
    """)
    result = project.run("run")
    assert result.returncode == 2
    assert result.stderr == "procctl: procfile.toml:6: process.web.restrat: unknown key (did you mean 'restart'?)\n"
    assert result.stdout == ""
    assert not (project.root / "started").exists()
    assert not (project.root / ".procctl").exists()


def test_missing_manifest_and_bad_options(project: Project) -> None:
    result = project.run("run")
    assert result.returncode == 2 and "no manifest here" in result.stderr and "procctl init" in result.stderr
    project.write('[process.a]\ncmd = "true"\n')
    for args in (["run", "-j", "0"], ["run", "--timeout", "soon"], ["run", "--bogus"], ["frobnicate"]):
        bad = project.run(*args)
        assert bad.returncode == 2, args
        assert "Traceback" not in bad.stderr


def test_check_prints_the_plan(project: Project) -> None:
    project.write("""
        [settings]
        max_parallel = 3
        [process.db]
        cmd = "db"
        ready = { tcp = "127.0.0.1:5432" }
        [process.web]
        cmd = "web"
        replicas = 2
        depends_on = { db = "ready" }
    """)
    result = project.run("check")
    assert result.returncode == 0
    assert "valid; 2 processes, 3 instances, pool of 3" in result.stdout
    plan = json.loads(project.run("check", "--json").stdout)
    assert plan["order"] == ["db", "web"]
    assert plan["processes"][1]["instances"] == ["web.1", "web.2"]
    assert project.run("check", "-j", "9", "--json").stdout.count('"max_parallel": 9') == 1


def test_import_converts_procfile_and_env(project: Project) -> None:
    """The converted manifest runs as the Procfile did, under foreman's rule
    too: web ends with 3, which stops the service beside it and is procctl's
    exit code."""
    (project.root / "Procfile").write_text("web: echo web $PORT $GREETING; exit 3\nsvc: sleep 300\n")
    (project.root / ".env").write_text("GREETING=hi\n")
    result = project.run("import")
    assert result.returncode == 0, result.stderr
    run = project.run("run", "--plain")
    assert run.returncode == 3
    assert "web 5000 hi" in run.stdout and "svc" in run.stdout
    assert project.run("import", "missing").returncode == 2


def test_version_and_help(project: Project) -> None:
    assert project.run("--version").stdout.startswith("procctl ")
    helped = project.run("--help")
    assert helped.returncode == 0
    for command in ("run", "check", "status", "pause", "limits", "logs", "up", "down"):
        assert command in helped.stdout

"""`procctl exec`: a one-off command with the project's environment, in the
foreground, exiting with the command's code (honcho run, foreman run)."""

from __future__ import annotations

import json

from conftest import PY, Project

SHOW = "import json, os, sys; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(), 'stdin': sys.stdin.read()})); sys.exit(7)"


def test_exec_runs_with_the_manifest_s_env_and_exits_with_the_command_s_code(project: Project) -> None:
    """1. A manifest with [env] and an env file; a one-off reads its env, cwd
       and stdin and exits 7.
    2. procctl exec passes stdin through, gives it the manifest's env (the
       file's and the table's), runs it in the current directory, and exits 7."""
    (project.root / "app.env").write_text('FROM_FILE="file value" # a note\n')
    project.write("""
        [settings]
        env_file = "app.env"
        [env]
        FROM_TABLE = "table value"
        [process.web]
        cmd = "sleep 1"
        port = 8000
        env = { ONLY_WEB = "yes" }
    """)
    result = project.run("exec", "--", PY, "-c", SHOW, input=b"from stdin")
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout)
    assert seen["env"]["FROM_FILE"] == "file value" and seen["env"]["FROM_TABLE"] == "table value"
    assert "ONLY_WEB" not in seen["env"] and "PORT" not in seen["env"]
    assert seen["cwd"] == str(project.root) and seen["stdin"] == "from stdin"


def test_exec_with_a_process_takes_its_env_port_and_cwd(project: Project) -> None:
    """With -p web.2: web's env, replica 2's PORT and web's cwd."""
    (project.root / "srv").mkdir()
    project.write("""
        [env]
        SHARED = "1"
        [process.web]
        cmd = "sleep 1"
        cwd = "srv"
        port = 8000
        replicas = 2
        env = { ONLY_WEB = "yes" }
    """)
    result = project.run("exec", "-p", "web.2", "--", "sh", "-c", 'echo "$SHARED $ONLY_WEB $PORT $(pwd)"; exit 3')
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ["1", "yes", "8001", str(project.root / "srv")]
    whole = project.run("exec", "-p", "web", "--", "sh", "-c", 'echo "$PORT"')
    assert whole.returncode == 0 and whole.stdout.strip() == "8000"


def test_exec_errors_are_one_line_with_a_shell_s_codes(project: Project) -> None:
    project.write("""
        [process.web]
        cmd = "sleep 1"
    """)
    missing = project.run("exec", "--", "no-such-command-here")
    assert missing.returncode == 127 and missing.stderr == "procctl: command not found: no-such-command-here\n"
    unknown = project.run("exec", "-p", "nope", "--", "true")
    assert unknown.returncode == 2 and unknown.stderr.startswith("procctl: unknown process") and len(unknown.stderr.splitlines()) == 1

"""`procctl run` end to end: real manifests, real children, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

from conftest import PY, Project, alive, helper, marked_pids, max_overlap, spans, wait_until


def test_pool_bound_holds_and_is_used(project: Project) -> None:
    """12 jobs of 0.3 s at max_parallel = 3: never more than 3 overlap, and 3 do."""
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [settings]
        max_parallel = 3
        [process.job]
        cmd = ["{PY}", "{helper('marker.py')}", "{marks}", "{{index}}", "0.3"]
        each = {{ range = [1, 12] }}
    """)
    result = project.run("run")
    assert result.returncode == 0, result.stderr
    runs = spans(marks)
    assert len(runs) == 12
    assert max_overlap(runs) == 3


def test_parallel_option_overrides_manifest(project: Project) -> None:
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [settings]
        max_parallel = 8
        [process.job]
        cmd = ["{PY}", "{helper('marker.py')}", "{marks}", "{{index}}", "0.2"]
        each = {{ range = [1, 6] }}
    """)
    result = project.run("run", "-j", "1")
    assert result.returncode == 0, result.stderr
    assert max_overlap(spans(marks)) == 1


def test_dependencies_wait_for_readiness_and_success(project: Project) -> None:
    """1. db becomes ready 0.5 s after it starts (log probe).
    2. migrate depends on db ready and must succeed before web starts.
    3. web's start is after db's readiness and migrate's end."""
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [process.web]
        cmd = ["{PY}", "{helper('marker.py')}", "{marks}", "web", "0"]
        depends_on = {{ migrate = "succeeded", db = "ready" }}
        [process.migrate]
        cmd = ["{PY}", "{helper('marker.py')}", "{marks}", "migrate", "0.2"]
        depends_on = {{ db = "ready" }}
        [process.db]
        cmd = ["{PY}", "{helper('on_term.py')}", "{marks}", "db", "0.5"]
        ready = {{ log = "db ready", timeout = "20s" }}
    """)
    proc = project.start("run", "--plain")
    try:
        wait_until(lambda: (marks / "web").exists(), what="web to run")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    db_ready = int((marks / "db.ready").read_text())
    migrate_start, migrate_end = map(int, (marks / "migrate").read_text().split())
    web_start, _ = map(int, (marks / "web").read_text().split())
    assert migrate_start >= db_ready
    assert web_start >= migrate_end
    assert proc.returncode == 130


def test_failed_dependency_skips_dependents(project: Project) -> None:
    project.write("""
        [settings]
        fail_fast = false
        [process.build]
        cmd = "echo building; exit 3"
        [process.deploy]
        cmd = "echo deploying"
        depends_on = { build = "succeeded" }
    """)
    result = project.run("run", "--json")
    assert result.returncode == 1
    assert "deploying" not in result.stdout
    import json

    summary = json.loads(result.stdout)
    states = {inst["name"]: inst for inst in summary["instances"]}
    assert (states["build"]["state"], states["build"]["exit_code"]) == ("failed", 3)
    assert states["deploy"]["state"] == "skipped"
    assert "build" in states["deploy"]["reason"]


def test_restart_with_backoff_and_max_restarts(project: Project) -> None:
    """A job that always fails, restart = on-failure, max_restarts = 2, backoff
    0.2 s: three attempts, the pauses between them at least 0.2 s then 0.4 s."""
    stamps = project.root / "stamps"
    project.write(f"""
        [process.flaky]
        cmd = "{PY} -c 'import time; print(time.time_ns())' >> {stamps}; exit 1"
        restart = "on-failure"
        max_restarts = 2
        backoff = "200ms"
    """)
    result = project.run("run")
    assert result.returncode == 1
    times = [int(line) for line in stamps.read_text().split()]
    assert len(times) == 3
    assert times[1] - times[0] >= 200_000_000
    assert times[2] - times[1] >= 400_000_000
    assert re.search(r"flaky\s+│\s+failed 1\s+│\s+1\s+│.*│\s+2\s+│", result.stdout), result.stdout


def test_restart_on_failure_ends_once_it_succeeds(project: Project) -> None:
    marker = project.root / "attempted"
    project.write(f"""
        [process.once]
        cmd = "if [ -e {marker} ]; then echo second; else touch {marker}; echo first; exit 1; fi"
        restart = "on-failure"
        backoff = "50ms"
    """)
    result = project.run("run")
    assert result.returncode == 0, result.stdout
    assert "first" in result.stdout and "second" in result.stdout
    assert (project.logs / "once.log").read_text() == "first\nsecond\n"


def test_job_timeout_stops_it(project: Project) -> None:
    pid_file = project.root / "pid"
    project.write(f"""
        [process.slow]
        cmd = "echo $$ > {pid_file}; exec sleep 30"
        timeout = "500ms"
    """)
    started = time.monotonic()
    result = project.run("run")
    assert result.returncode == 1
    assert "timed out" in result.stdout
    assert time.monotonic() - started < 25  # far below the child's 30 s
    assert not alive(int(pid_file.read_text()))


def test_sigterm_ignored_means_sigkill_after_stop_timeout(project: Project) -> None:
    pid_file = project.root / "pid"
    project.write(f"""
        [process.stubborn]
        cmd = ["{PY}", "{helper('ignore_term.py')}", "{pid_file}"]
        stop_timeout = "500ms"
    """)
    result = project.run("run", "--timeout", "1s")
    assert result.returncode == 124
    assert "sent SIGKILL" in result.stdout
    assert not alive(int(pid_file.read_text()))


def test_stop_reaches_grandchildren_and_setsid_escapees(project: Project) -> None:
    pids_file = project.root / "pids"
    project.write(f"""
        [process.tree]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids_file}"]
        stop_timeout = "2s"
    """)
    proc = project.start("run")
    wait_until(pids_file.exists, what="the tree to start")
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(pid) for pid in pids)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="the whole tree to be gone")


def test_children_die_when_procctl_is_sigkilled(project: Project) -> None:
    pids_file = project.root / "pids"
    project.write(f"""
        [process.tree]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids_file}"]
        [process.other]
        cmd = "sleep 300"
    """)
    proc = project.start("run")
    wait_until(pids_file.exists, what="the tree to start")
    wait_until(lambda: len(marked_pids(project.marker)) >= 5, what="procctl, the tree's three and other's sleep")
    pids = [int(p) for p in pids_file.read_text().split()]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="children of a killed procctl to die")
    wait_until(lambda: not marked_pids(project.marker), timeout=10, what="every marked process to die")


def test_ctrl_c_stops_in_reverse_dependency_order(project: Project) -> None:
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [settings]
        max_parallel = 3
        [process.db]
        cmd = ["{PY}", "{helper('on_term.py')}", "{marks}", "db"]
        ready = {{ log = "db ready" }}
        [process.api]
        cmd = ["{PY}", "{helper('on_term.py')}", "{marks}", "api"]
        depends_on = {{ db = "ready" }}
        ready = {{ log = "api ready" }}
        [process.web]
        cmd = ["{PY}", "{helper('on_term.py')}", "{marks}", "web"]
        depends_on = ["api"]
    """)
    proc = project.start("run")
    wait_until(lambda: (marks / "web.ready").exists(), what="web to start")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    stopped = {name: int((marks / name).read_text()) for name in ("db", "api", "web")}
    assert stopped["web"] <= stopped["api"] <= stopped["db"]
    assert not marked_pids(project.marker)


def test_sigterm_to_procctl_stops_gracefully(project: Project) -> None:
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [process.svc]
        cmd = ["{PY}", "{helper('on_term.py')}", "{marks}", "svc"]
    """)
    proc = project.start("run")
    wait_until(lambda: (marks / "svc.ready").exists(), what="svc to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert (marks / "svc").exists()  # it got SIGTERM and ran its handler
    assert "svc" in proc.out_path.read_text()  # type: ignore[attr-defined]


def test_fail_fast_stops_the_rest_and_keep_going_does_not(project: Project) -> None:
    project.write("""
        [process.bad]
        cmd = "sleep 0.2; exit 4"
        [process.long]
        cmd = "sleep 3; echo long finished"
    """)
    result = project.run("run")
    assert result.returncode == 1
    assert "long finished" not in result.stdout
    assert re.search(r"long\s+│\s+stopped", result.stdout), result.stdout
    assert "first failure: bad (failed 4)" in result.stdout
    result = project.run("run", "--keep-going")
    assert result.returncode == 1
    assert "long finished" in result.stdout


def test_log_is_byte_exact_for_random_bytes_up_to_exit(project: Project) -> None:
    expect = project.root / "expected.bin"
    project.write(f"""
        [process.noise]
        cmd = ["{PY}", "{helper('random_bytes.py')}", "{expect}", "3000000", "7"]
    """)
    result = project.run("run")
    assert result.returncode == 1  # the helper exits 3
    assert "Traceback" not in result.stdout + result.stderr
    assert (project.logs / "noise.log").read_bytes() == expect.read_bytes()


def test_invalid_utf8_and_a_huge_line_neither_crash_nor_stall(project: Project) -> None:
    project.write(f"""
        [process.bad]
        cmd = ["{PY}", "{helper('bad_output.py')}", "{100 * 1024 * 1024}"]
    """)
    result = project.run("run", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "bad \ufffd\ufffd bytes" in result.stdout
    assert "done" in result.stdout
    # 100 MiB rotate past the default 32 MiB: the pieces hold it all.
    assert len(project.whole_log("bad")) == len(b"bad \xff\xfe bytes\n\xc3(\n") + 100 * 1024 * 1024 + len(b"done\n")


def test_output_lines_are_prefixed_foreman_style(project: Project) -> None:
    project.write("""
        [process.hello]
        cmd = "echo hello; echo to stderr >&2; printf 'no newline'"
    """)
    result = project.run("run")
    assert result.returncode == 0
    assert re.search(r"^\d\d:\d\d:\d\d hello\s+\| hello$", result.stdout, re.M), result.stdout
    assert re.search(r"^\d\d:\d\d:\d\d hello\s+\| to stderr$", result.stdout, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d hello\s+\| no newline$", result.stdout, re.M)
    assert "\x1b[" not in result.stdout
    logged = (project.logs / "hello.log").read_bytes()
    assert sorted(logged) == sorted(b"hello\nto stderr\nno newline")


def test_force_color_colors_names_and_no_color_wins(project: Project) -> None:
    project.write("""
        [process.hello]
        cmd = "echo hi"
    """)
    colored = project.run("run", env={"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm-256color"})
    assert re.search(r"\x1b\[\d+mhello\s*\x1b\[0m \| hi", colored.stdout), repr(colored.stdout)
    plain = project.run("run", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert re.search(r"^\d\d:\d\d:\d\d hello\s+\| hi$", plain.stdout, re.M), repr(plain.stdout)


def test_replicas_get_their_own_port_and_log(project: Project) -> None:
    project.write("""
        [process.web]
        cmd = "echo port=$PORT instance=$PROCCTL_INSTANCE"
        replicas = 2
        port = 7100
    """)
    result = project.run("run")
    assert result.returncode == 0
    assert (project.logs / "web.1.log").read_text() == "port=7100 instance=web.1\n"
    assert (project.logs / "web.2.log").read_text() == "port=7101 instance=web.2\n"


def test_each_item_is_shell_quoted(project: Project) -> None:
    victim = project.root / "victim"
    victim.write_text("still here")
    project.write(f"""
        [process.echo]
        cmd = "echo got {{item}}"
        each = ["a b", "; rm {victim}", "$(rm {victim})", "it's"]
    """)
    result = project.run("run")
    assert result.returncode == 0, result.stdout
    assert victim.exists()
    logs = sorted((project.logs).glob("echo.*.log"))
    texts = {p.read_text() for p in logs}
    assert texts == {"got a b\n", f"got ; rm {victim}\n", f"got $(rm {victim})\n", "got it's\n"}


def _free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (a second copy of the suite may run beside
    this one: fixed ports would collide, and a probe rightly refuses a port
    another process holds)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_tcp_and_http_and_exec_probes(project: Project) -> None:
    http_port, tcp_port = _free_ports(2)
    project.write(f"""
        [settings]
        max_parallel = 4
        [process.http]
        cmd = ["{PY}", "-m", "http.server", "--bind", "127.0.0.1", "{{port}}"]
        port = {http_port}
        ready = {{ http = "http://127.0.0.1:{{port}}/", timeout = "20s" }}
        [process.tcp]
        cmd = ["{PY}", "-m", "http.server", "--bind", "127.0.0.1", "{tcp_port}"]
        depends_on = {{ http = "ready" }}
        ready = {{ tcp = "127.0.0.1:{tcp_port}", timeout = "20s" }}
        [process.exec]
        cmd = "sleep 0.3; touch flag; sleep 30"
        ready = {{ exec = "test -e flag", timeout = "20s" }}
        [process.last]
        cmd = "echo all ready"
        depends_on = {{ exec = "ready", tcp = "ready" }}
    """)
    proc = project.start("run")
    try:
        wait_until(lambda: "all ready" in proc.out_path.read_text(), what="the probes to pass")  # type: ignore[attr-defined]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "http is ready (http)" in out
    assert "tcp is ready (tcp)" in out
    assert "exec is ready (exec)" in out


def test_probe_that_never_passes_fails_the_instance(project: Project) -> None:
    project.write("""
        [process.mute]
        cmd = "sleep 30"
        ready = { log = "never printed", timeout = "300ms" }
        [process.after]
        cmd = "echo should not run"
        depends_on = { mute = "ready" }
    """)
    result = project.run("run")
    assert result.returncode == 1
    assert "not ready after 0.3s" in result.stdout
    assert "should not run" not in result.stdout


def test_command_not_found_is_one_line_and_exit_1(project: Project) -> None:
    project.write("""
        [process.ghost]
        cmd = ["no-such-program-anywhere"]
    """)
    result = project.run("run")
    assert result.returncode == 1
    assert "command not found: no-such-program-anywhere" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_spawn_errors_of_many_jobs_each_get_their_line(project: Project) -> None:
    # Spawned off the loop's thread, several at once: each failure is still its own line.
    project.write("""
        [settings]
        max_parallel = 4
        fail_fast = false
        [process.ghost]
        cmd = ["no-such-program-anywhere"]
        replicas = 3
        [process.plain]
        cmd = ["./not-executable.sh"]
        replicas = 3
        [process.fine]
        cmd = "echo fine"
    """)
    script = project.root / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    result = project.run("run", "--plain")
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "procctl |" in line]
    assert sum("command not found: no-such-program-anywhere" in line for line in lines) == 3
    assert sum("cannot execute ./not-executable.sh: permission denied" in line for line in lines) == 3
    assert "fine" in result.stdout and "never" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_named_processes_bring_their_dependencies(project: Project) -> None:
    project.write("""
        [process.a]
        cmd = "echo A"
        [process.b]
        cmd = "echo B"
        depends_on = ["a"]
        [process.c]
        cmd = "echo C"
    """)
    result = project.run("run", "b")
    assert result.returncode == 0
    assert re.search(r"^\S+ a\s+\| A$", result.stdout, re.M)
    assert "C" not in result.stdout.split("procctl summary")[0]
    bad = project.run("run", "nope")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "procctl: unknown process 'nope'; known processes: a, b, c"


def test_procfile_and_env_work_unchanged(project: Project) -> None:
    # As foreman, the first to end stops the other: each ends only once the other has spoken.
    wait_for = "until grep -q {0} .procctl/logs/{0}.log 2>/dev/null; do sleep 0.05; done"
    (project.root / "Procfile").write_text(
        f"web: echo web on $PORT says $GREETING; {wait_for.format('worker')}\nworker: echo worker on $PORT; {wait_for.format('web')}\n"
    )
    (project.root / ".env").write_text("GREETING='hello there'\n")
    result = project.run("run")
    assert result.returncode == 0, result.stderr
    assert "web on 5000 says hello there" in result.stdout
    assert "worker on 5100" in result.stdout


def test_manifest_from_env_var_and_option(project: Project) -> None:
    other = project.write('[process.x]\ncmd = "echo from other"\n', name="other.toml")
    via_env = project.run("run", env={"PROCCTL_FILE": str(other)})
    assert "from other" in via_env.stdout
    via_option = project.run("run", "-f", "other.toml")
    assert "from other" in via_option.stdout
    assert (project.root / ".procctl" / "logs" / "x.log").exists()

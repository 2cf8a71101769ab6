"""Services as a developer runs them: every one starts whatever the pool's
size; the pool bounds jobs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from typing import Any

import pytest
from conftest import PY, Project, helper, max_overlap, spans, started, wait_until


def _status(project: Project, *args: str) -> dict[str, Any] | None:
    result = project.run("status", "--json", *args)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def _states(project: Project) -> dict[str, str]:
    status = _status(project)
    return {row["name"]: row["state"] for row in status["instances"]} if status else {}


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60)


SIX_SERVICES = "".join(f"s{i}: sleep 300\n" for i in range(1, 7))


def test_a_procfile_of_six_services_starts_all_six_under_a_pool_of_one(project: Project) -> None:
    """1. A Procfile of six long-running services, run with a pool of one
       (as on a one-core machine).
    2. All six run at once: the pool holds back no service."""
    project.write(SIX_SERVICES, name="Procfile")
    proc = project.start("run", "-f", "Procfile", "-j", "1")
    try:
        wait_until(lambda: sorted(_states(project).values()) == ["running"] * 6, timeout=30, what="all six services to run")
    finally:
        _stop(proc)


def test_an_imported_procfile_starts_every_service(project: Project) -> None:
    """`import` writes nothing that holds services back: the converted
    manifest, run with a pool of one, starts all six."""
    project.write(SIX_SERVICES, name="Procfile")
    assert project.run("import", "Procfile").returncode == 0
    text = project.manifest.read_text()
    assert "pool" not in text and "max_parallel" not in text
    proc = project.start("run", "-j", "1")
    try:
        wait_until(lambda: sorted(_states(project).values()) == ["running"] * 6, timeout=30, what="all six services to run")
    finally:
        _stop(proc)


def test_plain_processes_that_opt_in_share_the_pool(project: Project) -> None:
    """CI steps written as plain processes: `[settings] pool = true` puts
    them in the pool, so a pool of 2 runs at most 2 of the 5 at once, while
    the service that says `pool = false` runs beside them."""
    marks = project.root / "marks"
    marks.mkdir()
    steps = "".join(
        f'[process.step{i}]\ncmd = ["{PY}", "{helper("marker.py")}", "{marks}", "step{i}", "0.3"]\n' for i in range(1, 6)
    )
    project.write(f"""
        [settings]
        max_parallel = 2
        pool = true
        [process.svc]
        cmd = "sleep 300"
        pool = false
    """ + steps)
    check = json.loads(project.run("check", "--json").stdout)
    assert check["pooled_instances"] == [f"step{i}" for i in range(1, 6)]
    assert {p["name"]: p["pooled"] for p in check["processes"]}["svc"] is False
    proc = project.start("run")
    try:
        wait_until(lambda: len(spans(marks)) == 5, timeout=60, what="the five steps to end")
        assert max_overlap(spans(marks)) == 2
        assert _states(project)["svc"] == "running"
    finally:
        _stop(proc)


def test_check_shows_what_the_pool_bounds_and_warns_of_waiting_for_ever(project: Project) -> None:
    """1. A pooled process that restarts for ever takes the only slot of a
       pool of 1; the jobs behind it could wait for ever: check, check
       --json and run say so.
    2. Services and `each` jobs are told apart in the plan."""
    project.write("""
        [settings]
        max_parallel = 1
        [process.web]
        cmd = "sleep 300"
        [process.watcher]
        cmd = "sleep 300"
        restart = "always"
        pool = true
        [process.thumb]
        cmd = "echo {item}"
        each = ["a", "b"]
    """)
    check = project.run("check")
    assert check.returncode == 0, check.stderr
    assert "procctl: warning: the pool of 1 can be held for ever by watcher" in check.stderr
    assert "2 other instances in the pool could wait for ever" in check.stderr
    assert "bounds 3 of 4 instances" in check.stdout
    plan = json.loads(project.run("check", "--json").stdout)
    assert plan["pooled_instances"] == ["watcher", "thumb[1]", "thumb[2]"]
    assert {p["name"]: p["pooled"] for p in plan["processes"]} == {"web": False, "watcher": True, "thumb": True}
    assert len(plan["warnings"]) == 1 and "watcher" in plan["warnings"][0]
    run = project.run("run", "--timeout", "1s")
    assert "procctl: warning: the pool of 1 can be held for ever by watcher" in run.stderr
    up = project.run("up", "-d", timeout=60)
    try:
        assert "procctl: warning: the pool of 1 can be held for ever by watcher" in up.stderr
    finally:
        project.run("down")
    # A pool as large as the never-ending instances leaves room: no warning.
    assert "warning" not in project.run("check", "-j", "2").stderr


def _procfile(project: Project, oneshot_exit: int) -> None:
    project.write(
        f"web: '{PY}' '{helper('graceful.py')}' 0 0.2\noneshot: while [ ! -s .procctl/logs/web.log ]; do sleep 0.05; done; exit {oneshot_exit}\n",
        name="Procfile",
    )


def test_a_procfile_stops_when_one_of_its_processes_ends(project: Project) -> None:
    """As under foreman and honcho: 1. oneshot exits 7 once web is up.
    2. web is stopped gracefully (its last line reaches its log).
    3. procctl exits 7, the code of the first process to end."""
    _procfile(project, 7)
    result = project.run("run", "-f", "Procfile", "--json", timeout=60)
    assert result.returncode == 7, result.stderr
    summary = {row["name"]: row for row in json.loads(result.stdout)["instances"]}
    assert {name: row["state"] for name, row in summary.items()} == {"web": "stopped", "oneshot": "failed"}
    assert summary["oneshot"]["exit_code"] == 7
    assert (project.logs / "web.log").read_text().endswith("clean exit\n")


def test_a_procfile_process_that_ends_well_ends_the_run_well(project: Project) -> None:
    _procfile(project, 0)
    result = project.run("run", "-f", "Procfile", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "oneshot exited 0 (exit_on_end)" in result.stdout


@pytest.mark.parametrize("flag", [["--can-die", "oneshot"], ["--any-can-die"]])
def test_can_die_lets_the_rest_run_on(project: Project, flag: list[str]) -> None:
    """overmind's --can-die and --any-can-die: oneshot ends, web runs on."""
    _procfile(project, 0)
    proc = project.start("run", "-f", "Procfile", *flag)
    try:
        wait_until(lambda: _states(project).get("oneshot") == "exited", timeout=30, what="oneshot to end")
        assert _states(project)["web"] == "running"
    finally:
        assert _stop(proc) == 130


def test_a_manifest_keeps_running_unless_a_process_asks_to_end_the_run(project: Project) -> None:
    """1. A TOML manifest: by default a process that ends stops nothing.
    2. `exit_on_end = true` on the test step: when it ends, the services are
       stopped and procctl exits with its code (a CI job's exit code)."""
    manifest = f"""
        [process.web]
        cmd = ["{PY}", "{helper('graceful.py')}", "0", "0.2"]
        [process.tests]
        cmd = "while [ ! -s .procctl/logs/web.log ]; do sleep 0.05; done; exit 3"
    """
    project.write(manifest)
    proc = project.start("run", "--keep-going")
    try:
        wait_until(lambda: _states(project).get("tests") == "failed", timeout=30, what="tests to fail")
        assert _states(project)["web"] == "running"
    finally:
        _stop(proc)
    project.write(manifest + "exit_on_end = true\n")
    result = project.run("run", "--keep-going", timeout=60)
    assert result.returncode == 3, result.stderr
    assert (project.logs / "web.log").read_text().endswith("clean exit\n")


def test_a_restart_budget_starts_afresh_after_min_uptime(project: Project) -> None:
    """max_restarts = 1, min_uptime = 1s:
    1. The first run fails at once: its one restart is spent.
    2. The second lasts 2 s, then fails: past min_uptime, so the budget starts
       afresh and it is restarted (counted over the whole run, it would have
       given up here).
    3. The third stays up."""
    counter = project.root / "runs"
    project.write(f"""
        [process.svc]
        cmd = ["{PY}", "{helper('attempts.py')}", "{counter}", "0:1", "2:1", "stay"]
        restart = "on-failure"
        max_restarts = 1
        min_uptime = "1s"
        backoff = "10ms"
    """)
    proc = project.start("run", "--plain")
    try:
        log = project.logs / "svc.log"
        wait_until(lambda: log.exists() and "attempt 3" in log.read_text(), timeout=60, what="the third run")
        wait_until(lambda: _states(project).get("svc") == "running", what="the third run to be running")
    finally:
        _stop(proc)
    assert "gave up" not in proc.out_path.read_text()  # type: ignore[attr-defined]


def test_giving_up_says_how_many_restarts_in_how_long_and_why(project: Project) -> None:
    """A run that keeps failing at once: after max_restarts restarts in a
    row, the log, the summary and the events say procctl gave up, and why."""
    project.write("""
        [process.flaky]
        cmd = "echo trying; exit 3"
        restart = "on-failure"
        max_restarts = 2
        min_uptime = "1h"
        backoff = "10ms"
    """)
    result = project.run("run", "--plain", "--events", "events.jsonl", timeout=60)
    assert result.returncode == 1, result.stderr
    assert re.search(r"flaky gave up after 2 restarts in \S+: failed 3", result.stdout)  # the log
    assert re.search(r"│ flaky +│ failed 3 .*│ gave up after 2 restarts in \S+: failed 3", result.stdout)  # the summary
    records = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines()]
    (gave_up,) = [r for r in records if r["event"] == "gave_up"]
    assert (gave_up["instance"], gave_up["restarts"], gave_up["why"]) == ("flaky", 2, "failed 3")
    assert records[-1]["event"] != "gave_up"  # its state follows
    last_state = [r for r in records if r["event"] == "state" and r["instance"] == "flaky"][-1]
    assert last_state["state"] == "failed" and last_state["reason"].startswith("gave up after 2 restarts in ")


@pytest.mark.slow
def test_up_waits_until_its_wait_timeout_for_a_supervisor_slow_to_answer(project: Project) -> None:
    """`up -d --wait` keeps asking for the status until --wait-timeout,
    however long one answer takes (a supervisor busy starting thousands):
    one that stops answering (here: stopped by SIGSTOP once it has answered)
    fails it at that deadline, saying so, not after a few seconds of one
    unanswered request."""
    project.write("""
        [process.web]
        cmd = "sleep 300"
        ready = { log = "never said", timeout = "1h" }
    """)
    up = project.start("up", "-d", "--wait", "--wait-timeout", "25s")
    frozen = 0
    try:
        wait_until(lambda: started(project.status()), timeout=60, what="the supervisor to answer")
        frozen = int((project.root / ".procctl" / "supervisor.pid").read_text())
        os.kill(frozen, signal.SIGSTOP)
        assert up.wait(timeout=120) == 1
        said = up.err_path.read_text()  # type: ignore[attr-defined]
        # (Whether up had its own answer before the stop depends on the
        # machine's load: its first request may be the one left unanswered.)
        assert re.match(r"procctl: not ready after 25s \(the supervisor (stopped answering|never answered); see ", said) and said.count("\n") == 1, said
    finally:
        if frozen:
            os.kill(frozen, signal.SIGCONT)
        assert project.run("down").returncode == 0


def test_up_wait_names_the_service_that_is_not_ready_and_ignores_queued_jobs(project: Project) -> None:
    """1. `up -d --wait`: `db` becomes ready, `cache` never does (its probe
       would allow far longer than --wait-timeout); two jobs share a pool of
       one, so one of them is queued.
    2. up exits 1 naming cache as not ready; db and the queued job are not
       named.
    3. Once cache is taken out (`up -d --wait db job`), the same queued job
       does not stop --wait from succeeding."""
    project.write(f"""
        [settings]
        max_parallel = 1
        [process.db]
        cmd = ["{PY}", "-c", "import time; print('db ready', flush=True); time.sleep(300)"]
        ready = {{ log = "db ready" }}
        [process.cache]
        cmd = "sleep 300"
        ready = {{ log = "never said", timeout = "1h" }}
        [process.job]
        cmd = "sleep 300"
        each = [1, 2]
    """)
    up = project.run("up", "-d", "--wait", "--wait-timeout", "3s", timeout=120)
    try:
        assert up.returncode == 1, up.stderr
        assert "procctl: not ready after 3s: " in up.stderr and "cache (running, not ready)" in up.stderr
        assert "db (" not in up.stderr and "job[" not in up.stderr
    finally:
        assert project.run("down").returncode == 0
    up = project.run("up", "-d", "--wait", "--wait-timeout", "60s", "db", "job", timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert "queued for the pool of 1: job[2]" in up.stdout
        assert {r["name"]: r["state"] for r in _status(project)["instances"]}["db"] == "ready"  # type: ignore[index]
    finally:
        assert project.run("down").returncode == 0

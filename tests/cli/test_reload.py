"""`procctl reload`: the edited manifest applied to a running supervisor —
new processes start, removed ones stop, changed ones restart, the rest keep
their pids; an invalid manifest changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from conftest import PY, Project, alive, wait_until

BEFORE = f"""
    [process.db]
    cmd = ["{PY}", "-c", "import time; print('db up', flush=True); time.sleep(600)"]
    ready = {{ log = "db up" }}

    [process.web]
    cmd = "exec sleep 601"
    depends_on = {{ db = "ready" }}

    [process.worker]
    cmd = "exec sleep 602"
    env = {{ MODE = "one" }}

    [process.old]
    cmd = "exec sleep 603"
"""

AFTER = f"""
    [process.db]
    cmd = ["{PY}", "-c", "import time; print('db up', flush=True); time.sleep(600)"]
    ready = {{ log = "db up" }}

    # a comment: every line below moved, and that alone changes nothing
    [process.web]
    cmd = "exec sleep 601"
    depends_on = {{ db = "ready" }}

    [process.worker]
    cmd = "exec sleep 602"
    env = {{ MODE = "two" }}

    [process.new]
    cmd = "exec sleep 604"
    depends_on = {{ db = "ready" }}
"""


def _pids(project: Project) -> dict[str, tuple[str, int | None]]:
    status = project.status()
    assert status is not None
    return {row["name"]: (row["state"], row["pid"]) for row in status["instances"]}  # type: ignore[index]


def _running(project: Project, names: set[str]) -> dict[str, tuple[str, int | None]]:
    def ready() -> dict[str, tuple[str, int | None]] | None:
        now = _pids(project)
        return now if all(now.get(name, ("", None))[0] in ("running", "ready") for name in names) else None

    return wait_until(ready, what=f"{', '.join(sorted(names))} to run")  # type: ignore[return-value]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_reload_adds_removes_changes_and_keeps(project: Project) -> None:
    """1. db, web, worker and old run.
    2. The manifest is edited: worker's env changes, old is gone, new is
       added, every line of web moved; `reload --dry-run` prints that plan
       and changes nothing.
    3. `reload`: new starts, old stops gracefully, worker restarts (a new
       pid, and its new env), db and web keep their pids; it says so per
       process, and the run's view says what the reload did."""
    project.write(BEFORE)
    proc = project.supervise("--plain")
    try:
        before = _running(project, {"db", "web", "worker", "old"})
        project.write(AFTER)
        dry = project.run("reload", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines() == [
            "dry run: nothing changed; a reload would do this:",
            "db: unchanged: keeps db",
            "worker: restarted (env changed): worker",
            "web: unchanged: keeps web",
            "new: added: new",
            "old: removed: old",
        ]
        assert _pids(project) == before

        result = project.run("reload")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == dry.stdout.splitlines()[1:]
        after = _running(project, {"db", "web", "worker", "new"})
        assert after["db"] == before["db"] and after["web"] == before["web"]
        assert after["worker"][1] != before["worker"][1]
        assert not alive(before["worker"][1])  # type: ignore[arg-type]
        old_pid = before["old"][1]
        wait_until(lambda: _pids(project)["old"][0] == "stopped" and not alive(old_pid), what="old to stop")  # type: ignore[arg-type]
        worker_pid = after["worker"][1]
        with open(f"/proc/{worker_pid}/environ", "rb") as f:
            assert b"\0MODE=two\0" in b"\0" + f.read()
        assert (project.status() or {})["instances"][-1]["name"] == "new"  # type: ignore[index]
    finally:
        _stop(proc)
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "worker: reload: restarted (env changed)" in out
    assert "new: reload: added" in out and "old: reload: removed" in out
    assert "web: reload" not in out and "db: reload" not in out


def test_an_invalid_reload_changes_nothing(project: Project) -> None:
    """1. Two processes run; the manifest is edited into one with an unknown
       key (and one with a dependency cycle).
    2. `reload` fails with the usual file:line:key error, exit 2; every pid
       is the one from before, and the supervisor answers on."""
    project.write(BEFORE)
    proc = project.supervise("--plain")
    try:
        before = _running(project, {"db", "web", "worker", "old"})
        project.write(AFTER.replace('env = { MODE = "two" }', 'env = { MODE = "two" }\n    colour = "blue"'))
        result = project.run("reload")
        assert result.returncode == 2
        assert result.stderr.strip() == "procctl: procfile.toml:14: process.worker.colour: unknown key"
        assert "Traceback" not in result.stderr
        project.write(BEFORE.replace('depends_on = { db = "ready" }', 'depends_on = { db = "ready" }').replace(
            "[process.db]", '[process.db]\n    depends_on = ["web"]'))
        cycle = project.run("reload")
        assert cycle.returncode == 2 and "dependency cycle" in cycle.stderr
        assert _pids(project) == before
    finally:
        _stop(proc)
    assert "reload" not in proc.out_path.read_text()  # type: ignore[attr-defined]


def test_env_file_contents_replicas_and_a_dependency_that_restarts(project: Project) -> None:
    """1. api reads an env file; web has one replica and depends on api
       being ready.
    2. The env file is edited and web gets three replicas; nothing else.
    3. `reload`: api restarts (its env file changed), web.1… web keeps its
       pid and two replicas are added; the new replicas start only once api
       is ready again."""
    (project.root / "api.env").write_text("LEVEL=1\n")
    manifest = f"""
        [process.api]
        cmd = ["{PY}", "-c", "import os, time; time.sleep(0.3); print('ready', os.environ['LEVEL'], flush=True); time.sleep(600)"]
        env_file = "api.env"
        ready = {{ log = "ready" }}

        [process.web]
        cmd = "echo web $PROCCTL_INSTANCE started; exec sleep 605"
        depends_on = {{ api = "ready" }}
        REPLICAS
    """
    project.write(manifest.replace("REPLICAS", ""))
    proc = project.supervise("--plain", "--events", "events.jsonl")
    try:
        before = _running(project, {"api", "web"})
        (project.root / "api.env").write_text("LEVEL=2\n")
        project.write(manifest.replace("REPLICAS", "replicas = 3"))
        result = project.run("reload", "--json")
        assert result.returncode == 0, result.stderr
        steps = {step["process"]: step for step in json.loads(result.stdout)["processes"]}
        assert steps["api"]["action"] == "restarted" and steps["api"]["changes"] == ["env"]
        assert steps["web"]["action"] == "scaled" and steps["web"]["started"] == ["web.2", "web.3"] and steps["web"]["kept"] == ["web"]
        after = _running(project, {"api", "web", "web.2", "web.3"})
        assert after["web"] == before["web"] and after["api"][1] != before["api"][1]
    finally:
        _stop(proc)
    records = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines()]
    ready_again = [i for i, r in enumerate(records) if r["event"] == "ready" and r["instance"] == "api"][1]
    started = {r["instance"]: i for i, r in enumerate(records) if r["event"] == "started"}
    assert started["web.2"] > ready_again and started["web.3"] > ready_again
    reloads = [r for r in records if r["event"] == "reload"]
    assert {r["name"]: r["action"] for r in reloads} == {"api": "restarted", "web": "scaled"}


def test_each_items_added_by_a_reload(project: Project) -> None:
    """A reload adds the new items of an `each` process and leaves the
    finished ones alone."""
    project.write(f"""
        [process.hold]
        cmd = "exec sleep 606"

        [process.job]
        cmd = ["{PY}", "-c", "import sys; print('item', sys.argv[1])", "{{item}}"]
        each = ["a", "b"]
    """)
    proc = project.supervise("--plain")
    try:
        wait_until(lambda: {r["name"]: r["state"] for r in (project.status() or {})["instances"]}.get("job[2]") == "exited")  # type: ignore[index]
        project.write(f"""
            [process.hold]
            cmd = "exec sleep 606"

            [process.job]
            cmd = ["{PY}", "-c", "import sys; print('item', sys.argv[1])", "{{item}}"]
            each = ["a", "b", "c"]
        """)
        result = project.run("reload")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[1] == "job: scaled (each changed): starts job[3]"
        wait_until(lambda: "item c" in project.log("job.3"), what="the new item to run")
        states = {r["name"]: (r["state"], r["restarts"]) for r in (project.status() or {})["instances"]}  # type: ignore[index]
        assert states["job[1]"] == ("exited", 0) and states["job[2]"] == ("exited", 0)
    finally:
        _stop(proc)


def test_reload_needs_a_running_supervisor(project: Project) -> None:
    project.write('[process.a]\ncmd = "true"\n')
    result = project.run("reload")
    assert result.returncode == 3 and "Traceback" not in result.stderr


def test_sighup_to_a_detached_supervisor_reloads(project: Project) -> None:
    """1. `up -d`; db, web, worker and old run.
    2. The manifest is edited as above; SIGHUP to the supervisor: it reloads
       as `procctl reload` does (worker restarted, new added, old stopped,
       db and web keep their pids) and runs on; its log says what it did.
    3. An invalid edit, SIGHUP again: refused in the log, nothing changed,
       and it runs on until `down`."""
    project.write(BEFORE)
    up = project.run("up", "-d")
    assert up.returncode == 0, up.stderr
    log = project.root / ".procctl" / "supervisor.log"
    try:
        before = _running(project, {"db", "web", "worker", "old"})
        pid = (project.status() or {})["pid"]
        project.write(AFTER)
        os.kill(pid, signal.SIGHUP)  # type: ignore[arg-type]
        wait_until(lambda: "reload (SIGHUP): 3 processes changed (worker, new, old)" in log.read_text(), what="the reload to be told")
        after = _running(project, {"db", "web", "worker", "new"})
        assert after["db"] == before["db"] and after["web"] == before["web"]
        assert after["worker"][1] != before["worker"][1]
        wait_until(lambda: _pids(project)["old"][0] == "stopped", what="old to stop")
        text = log.read_text()
        assert "worker: reload: restarted (env changed)" in text and "new: reload: added" in text
        assert "stopping" not in text

        project.write(AFTER.replace("[process.new]", "[process.new]\n    colour = 'blue'"))
        os.kill(pid, signal.SIGHUP)  # type: ignore[arg-type]
        wait_until(lambda: "reload (SIGHUP) refused, nothing changed: procfile.toml:" in log.read_text(), what="the refusal to be told")
        assert "process.new.colour: unknown key" in log.read_text()
        now = _pids(project)
        assert {name: now[name] for name in ("db", "web", "worker", "new")} == {name: after[name] for name in ("db", "web", "worker", "new")}
        assert (project.status() or {})["pid"] == pid
    finally:
        down = project.run("down")
    assert down.returncode == 0, down.stderr


def test_sighup_to_a_foreground_run_stops_it_gracefully(project: Project) -> None:
    """In the foreground SIGHUP means the terminal closed: no reload, a
    graceful stop (each instance gets its stop signal), exit 130."""
    project.write(BEFORE)
    proc = project.supervise("--plain")
    _running(project, {"db", "web", "worker", "old"})
    project.write(AFTER)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 130
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "stopping: hangup (SIGHUP: the terminal closed)" in out
    assert "4 stopped" in out and "reload" not in out

"""Processes that talk: a managed process finds its own supervisor through
its environment and sends, pauses and asks for status with no -f, from any
working directory."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PY, Project, interrupt, wait_until

ECHO = "import sys\\nfor line in sys.stdin: print('got', line.strip(), flush=True)"


def test_a_child_knows_its_supervisor_from_its_environment(project: Project, tmp_path: Path) -> None:
    """1. `web` has two replicas; each prints the contract variables.
    2. They name the control socket, the manifest, the process, the instance
       and the run id; the run id is the one the history records."""
    project.write(f"""
        [process.web]
        cmd = ["{PY}", "-c", "import os; print(*(k + '=' + os.environ.get(k, '-') for k in ('PROCCTL_SOCKET', 'PROCCTL_MANIFEST', 'PROCCTL_PROCESS', 'PROCCTL_INSTANCE', 'PROCCTL_RUN_ID')), flush=True)"]
        replicas = 2
        [process.web.env]
        PROCCTL_INSTANCE = "lies"
    """)
    result = project.run("run", "--plain")
    assert result.returncode == 0, result.stderr
    for instance in ("web.1", "web.2"):
        line = project.log(instance).strip()
        fields = dict(part.split("=", 1) for part in line.split())
        assert fields["PROCCTL_SOCKET"] == str(project.root / ".procctl" / "procctl.sock")
        assert fields["PROCCTL_MANIFEST"] == str(project.manifest)
        assert fields["PROCCTL_PROCESS"] == "web"
        assert fields["PROCCTL_INSTANCE"] == instance
        assert fields["PROCCTL_RUN_ID"].split("-")[0].isdigit()
    history = json.loads(project.run("history", "--json").stdout)["runs"]
    assert {row["session"] for row in history} == {fields["PROCCTL_RUN_ID"]}


def test_a_child_sends_pauses_and_asks_for_status_without_naming_the_manifest(project: Project, tmp_path: Path) -> None:
    """1. `worker` echoes its stdin; `batch` sleeps; `boss` waits for a go file.
    2. boss, from another working directory (/), runs `procctl send worker`,
       `procctl pause batch` and `procctl status --json`, none with -f.
    3. The worker got the line, batch is paused, and boss's status is this
       supervisor's."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A manifest in boss's working directory must not capture its commands.
    (elsewhere / "procfile.toml").write_text('[process.other]\ncmd = "sleep 1"\n')
    procctl = f"'{PY}' -m procctl"
    project.write(f"""
        [process.worker]
        cmd = ["{PY}", "-c", "{ECHO}"]

        [process.batch]
        cmd = "sleep 60"

        [process.boss]
        cmd = "while [ ! -e '{project.root}/go' ]; do sleep 0.05; done; cd '{elsewhere}' && {procctl} send worker job 42 && {procctl} pause batch && {procctl} status --json > '{project.root}/boss-status.json' && echo boss done"
    """)
    proc = project.supervise("--plain", "-j", "4")
    try:
        (project.root / "go").touch()
        wait_until(lambda: "boss done" in project.log("boss"), what="boss to finish")
        wait_until(lambda: "got job 42" in project.log("worker"), what="the message to arrive")
        seen = json.loads((project.root / "boss-status.json").read_text())
        assert seen["manifest"] == str(project.manifest)
        assert {row["name"] for row in seen["instances"]} == {"worker", "batch", "boss"}
        status = project.status()
        assert status is not None
        assert next(row for row in status["instances"] if row["name"] == "batch")["state"] == "paused"
    finally:
        interrupt(proc)


def test_a_message_names_its_sender_and_send_all_skips_it(project: Project) -> None:
    """1. `boss` and `worker` both echo their stdin; boss, once told to go,
       runs `procctl send worker job 7` and `procctl send --all hello all`.
    2. The events carry `from: boss` on each message; the plain output says
       `worker ← boss: job 7`.
    3. The broadcast reached worker and not boss, its sender; a send from
       the test (no instance) has no sender."""
    procctl = f"'{PY}' -m procctl"
    events_file = project.root / "events.jsonl"
    project.write(f"""
        [process.worker]
        cmd = ["{PY}", "-c", "{ECHO}"]

        [process.boss]
        cmd = "while [ ! -e '{project.root}/go' ]; do sleep 0.05; done; {procctl} send worker job 7 && {procctl} send --all hello all && echo boss sent; exec '{PY}' -c \\"{ECHO}\\""
    """)
    proc = project.supervise("--plain", "-j", "4", "--events", str(events_file))
    try:
        (project.root / "go").touch()
        wait_until(lambda: "boss sent" in project.log("boss"), what="boss to send")
        wait_until(lambda: "got hello all" in project.log("worker"), what="the broadcast to arrive")
        assert project.run("send", "boss", "from the terminal").returncode == 0
        wait_until(lambda: "got from the terminal" in project.log("boss"), what="the operator's line")
        assert "got hello all" not in project.log("boss")
    finally:
        interrupt(proc)
    messages = [event for event in map(json.loads, events_file.read_text().splitlines()) if event["event"] == "message"]
    assert [(m["instance"], m["text"], m["from"]) for m in messages] == [
        ("worker", "job 7", "boss"),
        ("worker", "hello all", "boss"),
        ("boss", "from the terminal", None),
    ]
    assert "worker ← boss: job 7" in proc.out_path.read_text()  # type: ignore[attr-defined]


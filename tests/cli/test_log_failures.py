"""A log that refuses writes never costs the screen a line, and never the
supervisor its life: a full disk (a real tmpfs of a few pages mounted on
.procctl/logs), an immutable log (chattr +i), a failing device (EIO, from a
real descriptor that returns it). One warning when the log stops taking
writes — on the screen, in the event stream and in the summary — and logging
resumes when it can. A log that cannot be opened at all fails its instance
with one line, never a stuck "starting"."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PY, Project, wait_until
from procctl.engine.logfile import LogFile

LINES = 2000
"""Lines of each batch: 188 KB, more than the whole filesystem below."""

GENERATOR = f"""
import os, time
for i in range({LINES}):
    print(f"line {{i:05d}} " + "x" * 80, flush=True)
open("batch1", "w").close()
while not os.path.exists("go"):
    time.sleep(0.02)
for i in range({LINES}, {2 * LINES}):
    print(f"line {{i:05d}} " + "x" * 80, flush=True)
"""


def _chattr(*args: str) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(["chattr", *args], capture_output=True).returncode == 0


@pytest.fixture
def full_logs(project: Project) -> Iterator[Path]:
    """`.procctl/logs` on a 128 KiB tmpfs, filled to the last page by a filler file."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill needs root")
    logs = project.logs
    logs.mkdir(parents=True, mode=0o700)
    os.chmod(logs.parent, 0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(logs)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with open(logs / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        yield logs
    finally:
        project.cleanup()
        subprocess.run(["umount", "-l", str(logs)], check=False)


def test_a_full_disk_loses_no_line_on_the_screen_and_logging_resumes(project: Project, full_logs: Path) -> None:
    """1. The log's filesystem is full from the start: the first batch of
       2,000 lines cannot be logged. 2. Space comes back (the filler goes);
       the second batch is logged again, until the disk is full once more.
    3. All 4,000 lines reached the terminal and the event stream; one
       warning per time the log stopped taking writes, on the screen, in
       the events and in the summary; exit 0, no traceback."""
    (project.root / "gen.py").write_text(GENERATOR)
    project.write(f'[process.gen]\ncmd = ["{PY}", "gen.py"]\n')
    proc = project.start("run", "--plain", "--events", "events.jsonl")
    last = f"line {LINES - 1:05d} "
    wait_until(lambda: last in proc.out_path.read_text(), what="the whole first batch on the screen")  # type: ignore[attr-defined]
    next(full_logs.rglob("filler")).unlink()  # (a new run moves what it finds to logs/past/)
    (project.root / "go").touch()
    assert proc.wait(timeout=60) == 0
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    err = proc.err_path.read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in out + err and "Exception" not in out + err
    shown = [line.split("| ", 1)[1] for line in out.splitlines() if " gen     | line " in line or " gen | line " in line]
    assert shown == [f"line {i:05d} " + "x" * 80 for i in range(2 * LINES)]
    refused = [line for line in out.splitlines() if "refuses writes (No space left on device)" in line]
    resumed = [line for line in out.splitlines() if "takes writes again;" in line]
    assert 1 <= len(refused) <= 2 and len(resumed) == 1, out  # full, freed, (full again)
    assert "warning: gen: its log" in out and "No space left on device); it was shown, not logged" in out
    records = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines()]
    assert [r["line"] for r in records if r["event"] == "output"] == shown
    assert sum("refuses writes" in r.get("message", "") for r in records) == len(refused)
    logged = (full_logs / "gen.log").read_bytes()
    assert logged.startswith(f"line {LINES:05d} ".encode()), "logging resumed with the second batch"
    assert logged in "".join(line + "\n" for line in shown).encode()
    summary = json.loads(project.run("history", "--json").stdout)["runs"]
    assert summary[0]["state"] == "exited"


def test_an_immutable_log_at_start_fails_its_instance_in_one_line(project: Project) -> None:
    """1. Last run's log of `a` is made immutable (chattr +i). 2. `run`: `a`
    fails at once with a reason naming its log (never stuck in starting),
    `b` runs; exit 1, no traceback."""
    project.write('[process.a]\ncmd = "echo from a"\n[process.b]\ncmd = "echo from b"\n[settings]\nfail_fast = false\n')
    assert project.run("run", "--plain").returncode == 0
    log = project.logs / "a.log"
    if not _chattr("+i", str(log)):
        pytest.skip("this filesystem does not take chattr +i")
    try:
        done = project.run("run", "--plain", "--json")
    finally:
        _chattr("-i", str(log))
    assert done.returncode == 1, done
    assert "Traceback" not in done.stdout + done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    by_name = {inst["name"]: inst for inst in summary["instances"]}
    assert by_name["a"]["state"] == "failed" and by_name["a"]["exit_code"] == 127
    assert by_name["a"]["reason"] == f"cannot write its log: {log}: Operation not permitted"
    assert by_name["b"]["state"] == "exited" and by_name["b"]["exit_code"] == 0


def test_a_log_made_immutable_while_running_warns_once_and_resumes(project: Project) -> None:
    """EPERM on every write of a running instance's log (chattr +i after it
    opened): one warning, every line still shown; chattr -i: logging resumes."""
    (project.root / "gen.py").write_text(GENERATOR)
    project.write(f'[process.gen]\ncmd = ["{PY}", "gen.py"]\n')
    proc = project.start("run", "--plain", "--json")
    log = project.logs / "gen.log"
    wait_until(lambda: (project.root / "batch1").exists(), what="the first batch")
    if not _chattr("+i", str(log)):
        proc.kill()
        pytest.skip("this filesystem does not take chattr +i")
    try:
        before = log.stat().st_size
        (project.root / "go").touch()
        wait_until(lambda: "refuses writes" in proc.err_path.read_text(), what="the warning")  # type: ignore[attr-defined]
    finally:
        _chattr("-i", str(log))
    assert proc.wait(timeout=60) == 0
    out = proc.err_path.read_text()  # type: ignore[attr-defined]  # (with --json the human lines go to stderr)
    assert sum(f"{line:05d} " in out for line in range(2 * LINES)) == 2 * LINES
    assert out.count("refuses writes (Operation not permitted)") == 1
    assert log.stat().st_size >= before
    # Every byte the log lacks is counted, the run's whole loss, not only
    # what was lost when the warning was given.
    summary = json.loads(proc.out_path.read_text())  # type: ignore[attr-defined]
    missing = 2 * LINES * len(f"line 00000 {'x' * 80}\n") - log.stat().st_size
    assert missing > 0 and summary["instances"][0]["log_lost_bytes"] == missing


def test_eio_from_the_log_device_is_counted_and_told_once() -> None:
    """A descriptor that answers every write with EIO (a terminal whose
    other side closed: the kernel's own EIO), then one that works."""
    master, slave = pty.openpty()
    os.close(master)
    told: list[tuple[str | None, int]] = []
    log = LogFile(slave, lambda error, lost: told.append((error.strerror if error else None, lost)))
    for _ in range(3):
        log.write(b"x" * 100)
    assert told == [("Input/output error", 100)]
    assert log.lost_bytes == 300 and log.failing
    read, write = os.pipe()
    os.close(slave)
    log.fd = write
    log.write(b"back\n")
    assert told[-1] == (None, 300) and not log.failing
    assert os.read(read, 100) == b"back\n"
    log.close()
    os.close(read)

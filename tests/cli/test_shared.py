"""Shared memory regions through the real binary: processes share bytes, a
read-only process cannot map writable, a region outlives restarts and
nothing of it survives `kill -9` of procctl; `procctl shm`; memory counted
once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from conftest import PY, Project, helper, interrupt, wait_until
from procctl.control.protocol import REQUEST_TIMEOUT_S

USER = helper("shm_user.py")
MiB = 1024 * 1024


def test_a_writer_and_a_reader_share_bytes_and_a_read_only_process_cannot_map_writable(project: Project) -> None:
    """1. `writer` (read-write) puts a line at offset 4096 and ends.
    2. `reader` (read-only), started once writer succeeded, reads it back;
       `prober` (read-only) tries to map the region writable: EACCES.
    3. The supervisor reads the same bytes (`shm read`)."""
    project.write(f"""
        [shared.table]
        size = "1MiB"

        [process.writer]
        cmd = ["{PY}", "{USER}", "table", "write", "4096", "loaded by the writer"]
        shared = ["table"]

        [process.reader]
        cmd = ["{PY}", "{USER}", "table", "read", "4096", "20"]
        shared = ["table:ro"]
        depends_on = {{ writer = "succeeded" }}

        [process.prober]
        cmd = ["{PY}", "{USER}", "table", "map-writable"]
        shared = ["table:ro"]
        depends_on = {{ writer = "succeeded" }}

        [process.keep]
        cmd = "sleep 60"
    """)
    proc = project.supervise("--plain", "-j", "8")
    try:
        wait_until(lambda: "loaded by the writer" in project.log("reader"), what="the reader's line")
        wait_until(lambda: project.log("prober").strip(), what="the prober's answer")
        assert project.log("prober").strip() == "EACCES"
        read = project.run("shm", "read", "table", "--offset", "4096", "--length", "20")
        assert read.returncode == 0 and read.stdout == "loaded by the writer"
    finally:
        interrupt(proc)


def test_a_region_outlives_the_restarts_of_its_users(project: Project) -> None:
    """1. `once` fails on its first run after writing its attempt into the
    region; restarted, it reads what its first run wrote."""
    project.write(f"""
        [shared.state]
        size = 4096

        [process.once]
        cmd = "if [ -e '{project.root}/tried' ]; then exec '{PY}' '{USER}' state read 0 13; fi; touch '{project.root}/tried'; '{PY}' '{USER}' state write 0 'first attempt'; exit 3"
        shared = ["state"]
        restart = "on-failure"
        backoff = "100ms"
    """)
    result = project.run("run", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.log("once").splitlines() == ["written", "first attempt"]


def _memfds(token: str) -> list[tuple[int, str]]:
    """(pid, what) of every process that holds or maps a memfd named with `token`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                try:
                    if token in os.readlink(f"/proc/{entry}/fd/{fd}"):
                        found.append((int(entry), f"fd {fd}"))
                except OSError:
                    continue
            with open(f"/proc/{entry}/maps") as f:
                if token in f.read():
                    found.append((int(entry), "mapped"))
        except OSError:
            continue
    return found


def test_no_region_survives_kill_9_of_procctl(project: Project) -> None:
    """1. A supervisor makes region `r<token>` and a holder maps it.
    2. The region is nowhere in the file system (not in /dev/shm).
    3. procctl is killed with SIGKILL; its children die with it (the
       guardian), and once they are gone nothing holds or maps the region
       any more: its memory is freed."""
    token = "r" + project.marker[:20]
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    project.write(f"""
        [shared.{token}]
        size = "4MiB"

        [process.holder]
        cmd = ["{PY}", "{USER}", "{token}", "hold"]
        shared = ["{token}:ro"]
    """)
    proc = project.supervise("--plain", "-j", "8")
    try:
        wait_until(lambda: "holding" in project.log("holder"), what="the holder to map it")
        held = _memfds(f"memfd:procctl-{token}")
        assert {what for _, what in held} >= {"mapped"} and proc.pid in {pid for pid, _ in held}
        if os.path.isdir("/dev/shm"):
            assert not [name for name in set(os.listdir("/dev/shm")) - shm_before if token in name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_until(lambda: _memfds(f"memfd:procctl-{token}") == [], timeout=30, what="every holder of the region to be gone")
    finally:
        interrupt(proc)
    if os.path.isdir("/dev/shm"):
        assert not [name for name in os.listdir("/dev/shm") if token in name]


def test_shm_ls_read_and_write_and_their_one_line_errors(project: Project) -> None:
    """1. `shm write` puts stdin at an offset; `shm read` gets it back;
       `shm ls` names the region, its size and who uses it (and maps it).
    2. Reading or writing past the end, or an unknown region, is one line
       and exit 2, and a write that does not fit changes nothing."""
    project.write(f"""
        [shared.table]
        size = 8192

        [process.holder]
        cmd = ["{PY}", "{USER}", "table", "hold"]
        shared = ["table:ro"]
    """)
    proc = project.supervise("--plain", "-j", "8")
    try:
        wait_until(lambda: "holding" in project.log("holder"), what="the holder to map it")
        wrote = project.run("shm", "write", "table", "--offset", "8000", input=b"edge of the table")
        assert wrote.returncode == 0, wrote.stderr
        assert wrote.stderr.strip() == "wrote 17 bytes to table at offset 8000"
        read = project.run("shm", "read", "table", "--offset", "8000", "--length", "17")
        assert (read.returncode, read.stdout) == (0, "edge of the table")
        whole = subprocess.run(
            [PY, "-m", "procctl", "shm", "read", "table"], cwd=project.root, env=project.env(), capture_output=True, timeout=60
        )
        assert whole.returncode == 0 and len(whole.stdout) == 8192 and whole.stdout[8000:8017] == b"edge of the table"

        listed = json.loads(project.run("shm", "ls", "--json").stdout)
        (region,) = listed["regions"]
        assert region["name"] == "table" and region["size_bytes"] == 8192 and region["resident_bytes"] >= 4096
        assert [(u["instance"], u["mode"], u["mapped"]) for u in region["users"]] == [("holder", "ro", True)]
        table = project.run("shm", "ls")
        assert table.returncode == 0 and "holder (ro, mapped)" in table.stdout

        for args, stdin, message in [
            (("read", "table", "--offset", "8000", "--length", "200"), None, "shm read table: 200 bytes at offset 8000 go past its end (8192 bytes)"),
            (("read", "table", "--offset", "9000"), None, "shm read table: offset 9000 is past its end (8192 bytes)"),
            (("write", "table", "--offset", "8100"), b"x" * 100, "shm write table: the data is longer than the 92 bytes from offset 8100 to its end (8192 bytes)"),
            (("read", "tabel"), None, "unknown shared region 'tabel' (did you mean 'table'?); regions of this run: table"),
            (("read",), None, "shm read: name the region (procctl shm read NAME)"),
        ]:
            result = project.run("shm", *args, input=stdin)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert result.stderr == f"procctl: {message}\n", args
        after = project.run("shm", "read", "table", "--offset", "8100", "--length", "17")
        assert after.stdout == "\0" * 17
    finally:
        interrupt(proc)


def test_shared_memory_is_counted_once(project: Project) -> None:
    """1. A 32 MiB region filled by `fill`; three readers map all of it.
    2. Each reader's resident set holds the whole region (the kernel's RSS
       counts it three times over); procctl counts it once: each reader's
       memory in `status` is its proportional share (PSS), and the three
       together hold less than twice the region.
    3. `status --json` lists the region once with its resident size."""
    project.write(f"""
        [shared.big]
        size = "32MiB"

        [process.fill]
        cmd = ["{PY}", "-c", "import mmap, os; f = os.open(os.environ['PROCCTL_SHM_BIG'], os.O_RDWR); m = mmap.mmap(f, 32 << 20); m[:] = b'x' * (32 << 20); print('filled', flush=True)"]
        shared = ["big"]

        [process.reader]
        cmd = ["{PY}", "-c", "import mmap, os, signal; f = os.open(os.environ['PROCCTL_SHM_BIG'], os.O_RDONLY); m = mmap.mmap(f, 32 << 20, prot=mmap.PROT_READ); print('read', sum(m[i:i + 65536].count(b'x') for i in range(0, 32 << 20, 65536)), flush=True); signal.pause()"]
        shared = ["big:ro"]
        replicas = 3
        depends_on = {{ fill = "succeeded" }}

        [settings]
        metrics_interval = "200ms"
    """)
    proc = project.supervise("--plain", "-j", "8")
    try:
        for i in (1, 2, 3):
            wait_until(lambda i=i: f"read {32 * MiB}" in project.log(f"reader.{i}"), what=f"reader.{i} to read it all")

        def counted_once() -> dict[str, Any] | None:
            # Sampled after each has read it all: without PSS, three regions' worth.
            status = project.status()
            rows = [row for row in (status or {"instances": []})["instances"] if row["process"] == "reader"]
            if len(rows) == 3 and all(row["rss_bytes"] for row in rows) and sum(row["rss_bytes"] for row in rows) < 2 * 32 * MiB:
                return status
            return None

        status = wait_until(counted_once, what="the readers' memory to count the region once")
        assert isinstance(status, dict)
        readers = [row for row in status["instances"] if row["process"] == "reader"]
        for row in readers:
            with open(f"/proc/{row['pid']}/status") as f:
                vm_rss_kb = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
            assert vm_rss_kb * 1024 > 32 * MiB  # the kernel's RSS: the whole region, in each
            assert row["memory_basis"] == "pss"
        assert status["shared"] == [{"name": "big", "size_bytes": 32 * MiB, "resident_bytes": 32 * MiB}]
        table = project.run("status")
        assert "shared memory, counted once: big 32.0MiB of 32.0MiB" in table.stdout
    finally:
        interrupt(proc)


def test_the_shared_table_example_runs_with_python_alone(project: Project) -> None:
    """1. `init --example` writes shared_table.toml and its two scripts.
    2. It runs to the end: the loader fills the table and says READY=1,
       twelve workers read it read-only and check their sums, all exit 0.
    3. The table is counted once: one `shared` figure of 32 MiB resident,
       and every worker's memory is its PSS."""
    assert project.run("init", "--example").returncode == 0
    events_file = project.root / "events.jsonl"
    result = project.run("run", "--plain", "--json", "-f", "shared_table.toml", "--events", str(events_file), timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    summary = json.loads(result.stdout)
    assert {(row["name"], row["exit_code"]) for row in summary["instances"]} == {("loader", 0), *((f"worker[{i}]", 0) for i in range(1, 13))}
    for i in range(1, 13):
        assert project.log(f"worker.{i}").rstrip().endswith("ok")
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    regions = [r for r in records if r["event"] == "metrics" and r["name"] == "shared"]
    assert regions[-1] == {**regions[-1], "instance": "table", "size_bytes": 32 * MiB, "resident_bytes": 32 * MiB}
    assert any(r["event"] == "ready" and r["instance"] == "loader" and r["probe"] == "notify" for r in records)
    assert [r["text"] for r in records if r["event"] == "status_message"][-1] == "table complete"


@pytest.mark.slow
def test_shm_write_whose_stdin_comes_late_still_writes(project: Project) -> None:
    """1. `shm write` asks for the regions, then waits on its stdin longer
       than the supervisor gives a connection to send its next request.
    2. The data then comes: it is written all the same (the client takes a
       new connection after a pause), and reads back."""
    project.write("""
        [shared.table]
        size = 4096

        [process.svc]
        cmd = "sleep 600"
    """)
    proc = project.supervise("--plain")
    try:
        writer = subprocess.Popen(
            [PY, "-m", "procctl", "shm", "write", "table", "--offset", "10"], cwd=project.root, env=project.env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        project._started.append(writer)
        time.sleep(REQUEST_TIMEOUT_S + 3)  # the supervisor's wait for a request, waited out
        out, err = writer.communicate(b"late but whole", timeout=60)
        assert writer.returncode == 0, err
        assert err.decode().strip() == "wrote 14 bytes to table at offset 10"
        read = project.run("shm", "read", "table", "--offset", "10", "--length", "14")
        assert (read.returncode, read.stdout) == (0, "late but whole")
    finally:
        interrupt(proc)

"""Logs that keep up: rotation by size without losing a byte, each run's
logs apart, procctl's own events in their place, and `logs -f` that follows
new instances and ends with its supervisor."""

from __future__ import annotations

import datetime
import hashlib
import json
import signal
import time

import pytest

from conftest import PY, Project, helper, wait_until


def _rotated(project: Project, instance: str) -> list[str]:
    return sorted(path.name for path in project.logs.glob(f"{instance}.log.*[0-9]"))


def test_rotation_under_a_flood_loses_no_byte(project: Project) -> None:
    """1. A child writes 6 MiB of random bytes in odd-sized chunks; its log
       rotates every 256 KiB.
    2. The rotated files, oldest first, then the current one, are the child's
       output byte for byte (sha256), and no file is past its size but by the
       one chunk that started it."""
    expect = project.root / "expect.bin"
    project.write(f"""
        [process.flood]
        cmd = ["{PY}", "{helper('random_bytes.py')}", "{expect}", "{6 * 1024 * 1024}", "7"]
        log_max_size = "256KiB"
        log_keep = 1000
    """)
    result = project.run("run", "--plain", timeout=120)
    assert result.returncode == 1, result.stderr  # the helper exits 3 on purpose
    rotated = _rotated(project, "flood")
    assert len(rotated) >= 20, rotated
    assert hashlib.sha256(project.whole_log("flood")).hexdigest() == hashlib.sha256(expect.read_bytes()).hexdigest()
    for name in rotated:
        # A file rotates before a chunk would take it past 256 KiB; a chunk is at most 256 KiB.
        assert (project.logs / name).stat().st_size <= 2 * 256 * 1024


def test_log_keep_bounds_the_files_and_keeps_the_newest_output_whole(project: Project) -> None:
    expect = project.root / "expect.bin"
    project.write(f"""
        [settings]
        log_max_size = "64KiB"
        log_keep = 2

        [process.flood]
        cmd = ["{PY}", "{helper('random_bytes.py')}", "{expect}", "{2 * 1024 * 1024}", "11"]
    """)
    assert project.run("run", "--plain", timeout=120).returncode == 1
    assert _rotated(project, "flood") == ["flood.log.1", "flood.log.2"]
    kept = project.whole_log("flood")
    assert 0 < len(kept) < 2 * 1024 * 1024
    assert expect.read_bytes().endswith(kept)


def test_logs_show_the_current_run_with_procctls_events_in_their_place(project: Project) -> None:
    """1. web prints, fails, is restarted, prints again; the second run of
       the manifest has one replica where the first had three.
    2. `logs` shows this run's instances only, each event where it happened
       among the lines; `--previous` shows the run before, whole."""
    project.write("""
        [process.web]
        cmd = "echo hello from $PROCCTL_INSTANCE; exit 3"
        restart = "on-failure"
        max_restarts = 1
        backoff = "10ms"
        replicas = 3
    """)
    assert project.run("run", "--plain", "--keep-going").returncode == 1
    first = project.run("logs", "web.2", "-n", "100")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    order = [line for line in lines if not line.startswith("[procctl] web.2 restarting")]
    assert order == [
        order[0],  # started with pid N
        "hello from web.2",
        order[2],  # failed
        order[3],  # started again
        "hello from web.2",
        order[5],  # failed
        order[6],  # gave up
    ], first.stdout
    assert order[0].startswith("[procctl] web.2 started with pid") and "(attempt 2)" in order[3]
    assert order[2].startswith("[procctl] web.2 failed with code 3") and order[5].startswith("[procctl] web.2 failed with code 3")
    assert order[6].startswith("[procctl] web.2 gave up after 1 restart in ")
    assert any(line.startswith("[procctl] web.2 restarting in") for line in lines)

    project.write("""
        [process.web]
        cmd = "echo only me"
    """)
    assert project.run("run", "--plain").returncode == 0
    now = project.run("logs", "--no-events")
    assert now.stdout == "only me\n", now.stdout
    before = project.run("logs", "--previous", "--no-events")
    assert sorted(before.stdout.splitlines()) == sorted(f"web.{i} | hello from web.{i}" for i in (1, 2, 3) for _ in range(2))
    assert project.run("logs", "--run", "nope").returncode == 2


def test_since_and_timestamps(project: Project) -> None:
    project.write("""
        [process.talk]
        cmd = "echo old; while [ ! -e go ]; do sleep 0.02; done; echo new; sleep 60"
    """)
    proc = project.supervise("--plain")
    try:
        wait_until(lambda: "old" in project.log("talk"), what="the first line")
        cut = time.time()
        wait_until(lambda: time.time() > cut + 0.01)  # the clock has moved past the cut
        (project.root / "go").touch()
        wait_until(lambda: "new" in project.log("talk"), what="the second line")
        since = datetime.datetime.fromtimestamp(cut).isoformat()
        result = project.run("logs", "talk", "--since", since, "--no-events", "-t")
        assert result.returncode == 0, result.stderr
        (line,) = result.stdout.splitlines()
        stamp, text = line.split(" ", 1)
        assert text == "new" and datetime.datetime.fromisoformat(stamp).timestamp() >= cut - 0.001
        assert project.run("logs", "talk", "--since", "1h", "--no-events").stdout == "old\nnew\n"
        assert project.run("logs", "talk", "--since", "yesterday").returncode == 2
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_follow_prints_a_last_line_without_its_newline(project: Project) -> None:
    """A line with no newline written while `logs -F` follows is printed
    once its instance ends (v) or, for one still running (w), once the
    supervisor is gone: no output is lost to following."""
    wait_for_go = "while [ ! -e go ]; do sleep 0.05; done"
    project.write(f"""
        [process.w]
        cmd = "echo first w; {wait_for_go}; printf 'w partial'; exec sleep 600"
        [process.v]
        cmd = "echo first v; {wait_for_go}; printf 'v partial'"
    """)
    assert project.run("up", "-d").returncode == 0
    follower = project.start("logs", "-F", "--no-events")
    try:
        out = follower.out_path  # type: ignore[attr-defined]
        wait_until(lambda: "first w" in out.read_text() and "first v" in out.read_text(), what="the follower to show the first lines")
        (project.root / "go").touch()
        wait_until(lambda: "v | v partial\n" in out.read_text(), what="v's last line, once v ended")
        assert project.run("down").returncode == 0
        assert follower.wait(timeout=30) == 0
        assert out.read_text().endswith("w | w partial\n"), out.read_text()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_follow_shows_new_instances_and_ends_after_down(project: Project) -> None:
    """1. `up -d` a ticking web; `logs -f` follows it.
    2. `scale web=2`: the follower shows web.2's lines as they come.
    3. `down`: the follower prints the stop and ends by itself, exit 0."""
    project.write(f"""
        [process.web]
        cmd = ["{PY}", "-u", "-c", "import os, time\\nwhile True:\\n    print('tick', os.environ['PROCCTL_INSTANCE']); time.sleep(0.05)"]
    """)
    up = project.run("up", "-d")
    assert up.returncode == 0, up.stderr
    follower = project.start("logs", "-F", "-n", "1")
    try:
        out = follower.out_path  # type: ignore[attr-defined]
        wait_until(lambda: out.read_text().count("tick web") >= 3, what="the follower to show web")
        assert project.run("scale", "web=2").returncode == 0
        wait_until(lambda: "tick web.2" in out.read_text(), what="the follower to show web.2")
        assert project.run("down").returncode == 0
        assert follower.wait(timeout=30) == 0
        text = out.read_text()
        assert "[procctl] web.2 started with pid" in text
        assert "web.2 stopped" in text or "web.2 exited" in text, text
    finally:
        if follower.poll() is None:
            follower.kill()
        project.run("down")


def test_the_event_log_is_json_lines_with_positions(project: Project) -> None:
    project.write("""
        [process.one]
        cmd = "printf 'abc\\\\n'; exit 2"
    """)
    project.run("run", "--plain")
    records = [json.loads(line) for line in (project.logs / "events.jsonl").read_text().splitlines()]
    exited = next(record for record in records if record["event"] == "exited")
    assert exited["instance"] == "one" and exited["code"] == 2 and exited["at"] == 4
    started = next(record for record in records if record["event"] == "started")
    assert started["at"] == 0
    run = json.loads((project.logs / "run.json").read_text())
    assert set(run) >= {"run", "pid", "started", "manifest"}


def test_a_silent_instance_leaves_no_file_and_its_events_still_show(project: Project) -> None:
    """An instance that writes nothing leaves no file at all (making one is
    most of what a silent job's start costs the disk): no log, no index; one
    that writes gets both. `logs` still shows the silent one's events,
    `logs --no-events -t` reads either."""
    project.write("""
        [process.quiet]
        cmd = ["true"]
        [process.loud]
        cmd = ["echo", "hello"]
    """)
    done = project.run("run", "--plain")
    assert done.returncode == 0, done.stderr
    names = {path.name for path in project.logs.iterdir()}
    assert {"loud.log", "loud.log.idx"} <= names and not {"quiet.log", "quiet.log.idx"} & names, names
    for instance, expect in (("quiet", []), ("loud", ["hello"])):
        result = project.run("logs", instance, "--no-events", "-t")
        assert result.returncode == 0, result.stderr
        assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == expect
    shown = project.run("logs", "quiet")
    assert shown.returncode == 0, shown.stderr
    assert "[procctl] quiet started with pid" in shown.stdout and "[procctl] quiet exited with code 0" in shown.stdout, shown.stdout


def test_a_log_file_comes_with_the_first_byte(project: Project) -> None:
    """1. A child runs a while without output: it has no log file. 2. It
    writes: the file is made and holds the line, and `logs -F`, started
    while there was no file, shows its events and the line, and the events
    of one that never writes, then ends with the run."""
    project.write(f"""
        [process.late]
        cmd = ["{PY}", "-c", "import os, time\\nwhile not os.path.exists('go'):\\n    time.sleep(0.02)\\nprint('at last', flush=True)"]
        [process.hush]
        cmd = ["{PY}", "-c", "import os, time\\nwhile not os.path.exists('go'):\\n    time.sleep(0.02)"]
    """)
    run = project.start("run", "--plain")
    follower = None
    try:
        wait_until(lambda: "late started with pid" in run.out_path.read_text(), what="the start")  # type: ignore[attr-defined]
        assert not (project.logs / "late.log").exists()
        follower = project.start("logs", "-F")
        wait_until(lambda: "late started with pid" in follower.out_path.read_text(), what="the follower to show the start")  # type: ignore[attr-defined]
        (project.root / "go").touch()
        assert run.wait(timeout=30) == 0
        assert (project.logs / "late.log").read_text() == "at last\n"
        assert follower.wait(timeout=30) == 0
        text = follower.out_path.read_text()  # type: ignore[attr-defined]
        assert "at last" in text and "[procctl] late exited with code 0" in text, text
        assert "[procctl] hush exited with code 0" in text and not (project.logs / "hush.log").exists(), text
    finally:
        for proc in (run, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_link_planted_before_the_first_byte_is_not_followed(project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A link put where a log is to be made, while its child is still
    silent: the output is shown, never written through the link; one
    warning says the log refuses writes; the run still ends 0."""
    target = tmp_path_factory.mktemp("elsewhere") / "target"
    target.write_text("untouched\n")
    project.write(f"""
        [process.late]
        cmd = ["{PY}", "-c", "import os, time\\nwhile not os.path.exists('go'):\\n    time.sleep(0.02)\\nprint('secret line', flush=True)"]
    """)
    run = project.start("run", "--plain")
    try:
        wait_until(lambda: "late started with pid" in run.out_path.read_text(), what="the start")  # type: ignore[attr-defined]
        (project.logs / "late.log").symlink_to(target)
        (project.root / "go").touch()
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    out = run.out_path.read_text()  # type: ignore[attr-defined]
    assert "late    | secret line" in out or "late | secret line" in out, out
    assert target.read_text() == "untouched\n"
    assert out.count("refuses writes") == 1 and "symbolic link" in out, out
    assert "Traceback" not in out + run.err_path.read_text()  # type: ignore[attr-defined]
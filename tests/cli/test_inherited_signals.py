"""What procctl was started with ignoring stays procctl's, not its
children's: `nohup procctl`, `procctl up -d &` in a script (SIGINT and
SIGQUIT ignored) or a parent that ignores SIGCHLD must not leave a service
deaf to its stop signal, or lose a job's exit code to the kernel's reaping.
Signals it was started with blocked are unblocked, for it and its children."""

from __future__ import annotations

import json
import signal

from conftest import PY, Project, helper, wait_until

# What a shell's `&` without job control, `nohup`, and a parent that does
# not want zombies leave ignored.
IGNORED = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


def test_a_run_started_with_signals_ignored_starts_its_children_with_none_and_keeps_exit_codes(project: Project) -> None:
    """1. `run --plain` started with SIGINT, SIGQUIT, SIGHUP, SIGUSR1 and SIGCHLD ignored.
    2. Its job prints the mask of signals it ignores (/proc/self/status) and exits 3.
    3. The mask is empty, and the run reports exit code 3: with SIGCHLD
       ignored the kernel would have reaped the job, and its code been lost."""
    project.write("""
        [process.job]
        cmd = ["sh", "-c", "grep SigIgn /proc/self/status; exit 3"]
    """)
    done = project.run("run", "--plain", ignoring=IGNORED)
    assert done.returncode == 1, done
    assert "SigIgn:\t0000000000000000" in project.log("job"), project.log("job")
    assert "job failed with code 3" in done.stdout, done.stdout
    (row,) = json.loads(project.run("history", "--json").stdout)["runs"]
    assert row["exit_code"] == 3, row


def test_a_detached_supervisor_started_with_sigquit_ignored_stops_a_service_with_it(project: Project) -> None:
    """1. `up -d` started with SIGQUIT (among others) ignored, as a script's
       `procctl up -d &` is; a service whose stop signal is SIGQUIT, a shell
       that traps it (a shell cannot trap what it was started ignoring).
    2. `down`: the service gets SIGQUIT and writes its marker; the stop is
       graceful, not the SIGKILL after stop_timeout."""
    project.write("""
        [process.svc]
        cmd = ["sh", "-c", "trap 'touch got-quit; exit 0' QUIT; touch up; while :; do sleep 0.05; done"]
        stop_signal = "QUIT"
        stop_timeout = "30s"
    """)
    up = project.run("up", "-d", ignoring=IGNORED)
    assert up.returncode == 0, up
    wait_until(lambda: (project.root / "up").exists(), what="the service to start")
    down = project.run("down")
    assert down.returncode == 0, down
    assert (project.root / "got-quit").exists(), "the service never got SIGQUIT"
    (row,) = json.loads(project.run("history", "--json").stdout)["runs"]
    assert (row["state"], row["exit_code"], row["signal"]) == ("stopped", 0, None), row


def test_a_run_started_with_signals_blocked_stops_on_sigterm_and_starts_its_children_unblocked(project: Project) -> None:
    """1. `run --plain` started with SIGINT, SIGTERM, SIGHUP, SIGUSR1 and
       SIGCHLD blocked (a parent's mask survives its exec).
    2. Its service prints the mask of signals it blocks: none.
    3. SIGTERM to procctl: a graceful stop (the service's marker), exit 130;
       with SIGTERM left blocked it never came."""
    project.write(f"""
        [process.mask]
        cmd = ["sh", "-c", "grep SigBlk /proc/self/status; exec sleep 300"]
        [process.svc]
        cmd = ["{PY}", "{helper("on_term.py")}", ".", "svc"]
    """)
    blocked = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)
    proc = project.start("run", "--plain", blocking=blocked)
    wait_until(lambda: (project.root / "svc.ready").exists() and "SigBlk" in project.log("mask"), what="both to start")
    assert "SigBlk:\t0000000000000000" in project.log("mask"), project.log("mask")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert (project.root / "svc").exists(), "svc never got SIGTERM"

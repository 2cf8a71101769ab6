"""The guardian's end of a run: the watcher is let go, makes its last sweep
and is waited for; one that does not finish in time is killed and reaped."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil

from procctl.engine.guardian import TOKEN_VAR, Guardian


def test_close_waits_for_the_watchers_last_sweep() -> None:
    """A process carrying the run's token, never registered, is killed by
    the watcher's sweep at end-of-file, and `close` returns once the
    watcher has exited and been reaped."""
    guardian = Guardian()
    marked = subprocess.Popen(["sleep", "300"], env={**os.environ, TOKEN_VAR: guardian.token})
    try:
        watcher = guardian.pid
        guardian.close()
        assert marked.wait(timeout=60) == -signal.SIGKILL
        assert not psutil.pid_exists(watcher)  # exited and reaped, not a zombie
    finally:
        marked.kill()
        marked.wait()


def test_a_watcher_that_does_not_finish_is_killed_after_the_timeout() -> None:
    """A stopped watcher never finishes its sweep: `close` kills it once
    its timeout has passed, and reaps it."""
    guardian = Guardian()
    watcher = guardian.pid
    os.kill(watcher, signal.SIGSTOP)
    guardian.close(timeout_s=0.2)
    assert not psutil.pid_exists(watcher)  # killed and reaped: not even a zombie is left

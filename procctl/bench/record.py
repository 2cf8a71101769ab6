"""A benchmark's timed runs into the run history (`.procctl/state.db`), one
row per run, so that `procctl history` lists them beside the runs of
`procctl run`.

A row's manifest is the manifest path for a `-p` process and the literal
`benchmark` for an ad-hoc command line; its process is the process name or
the command line; its instance is `bench`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from procctl.bench.result import BenchmarkResult
from procctl.engine.history import History, RunRow

AD_HOC_MANIFEST = "benchmark"
INSTANCE = "bench"


def record_runs(result: BenchmarkResult, database: Path, warn: Callable[[str], None]) -> int:
    """Add every timed run; the number of rows written. Never raises for the
    database: a problem is one warning (as for `procctl run`)."""
    history = History(database, warn)
    session = f"{int(result.started_at)}-{os.getpid()}"
    for command_result in result.results:
        command = command_result.command
        for run in command_result.runs:
            if run.signal is not None:
                status = "killed"
            else:
                status = "exited" if run.exit_code == 0 else "failed"
            cpu = None if run.time_user_s is None or run.time_system_s is None else run.time_user_s + run.time_system_s
            history.add(
                RunRow(
                    manifest=str(command.manifest) if command.manifest else AD_HOC_MANIFEST,
                    process=command.process or command.text,
                    instance=INSTANCE,
                    item=None,
                    command=command.text,
                    session=session,
                    started_at=run.started_at,
                    ended_at=run.ended_at or time.time(),
                    status=status,
                    exit_code=run.exit_code,
                    signal=run.signal,
                    duration_s=run.time_wall_s,
                    peak_rss_bytes=run.memory_peak_bytes,
                    cpu_time_s=cpu,
                    restarts=0,
                )
            )
    history.close()
    return history.written

"""Tree metrics of real children: memory a child holds, a grandchild's share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import helper, wait_until
from procctl.engine.metrics import Sampler
from procctl.engine.proctable import ProcTable, PsutilTable, ProcessTable

MiB = 1 << 20
TABLES = [pytest.param(ProcTable(), id="proc"), pytest.param(PsutilTable(), id="psutil")]


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _start(started: list[subprocess.Popen[bytes]], cmd: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, shell=True, start_new_session=True, stdout=subprocess.PIPE)
    started.append(proc)
    return proc


def _holding(proc: subprocess.Popen[bytes], mib: int) -> None:
    assert proc.stdout is not None
    wait_until(lambda: f"holding {mib} MiB".encode() in proc.stdout.readline(), what=f"{mib} MiB allocated")  # type: ignore[union-attr]


@pytest.mark.parametrize("table", TABLES)
def test_rss_of_a_child_holding_200_mib(table: ProcessTable, spawn: list[subprocess.Popen[bytes]]) -> None:
    proc = _start(spawn, f"exec {sys.executable} {helper('grow.py')} 200 200 0")
    _holding(proc, 200)
    usage = table.sample([proc.pid])[proc.pid]
    # The interpreter itself adds some MiB over the 200 it holds.
    assert 200 * MiB <= usage.rss_bytes <= 260 * MiB
    assert usage.children == 0 and usage.threads >= 1


@pytest.mark.parametrize("table", TABLES)
def test_the_tree_sum_counts_a_grandchild(table: ProcessTable, spawn: list[subprocess.Popen[bytes]]) -> None:
    # sh (not exec'd: it stays as the root) -> python holding 150 MiB.
    proc = _start(spawn, f"{sys.executable} {helper('grow.py')} 150 150 0; true")
    _holding(proc, 150)
    usage = table.sample([proc.pid])[proc.pid]
    assert usage.children == 1
    assert usage.rss_bytes >= 150 * MiB
    assert table.sample([proc.pid + 10_000_000]) == {}


def test_cpu_time_and_percent_of_a_busy_tree(spawn: list[subprocess.Popen[bytes]]) -> None:
    proc = _start(spawn, f"{sys.executable} {helper('busy.py')}; true")
    published = []
    sampler = Sampler(0.2, published.append, table=ProcTable())
    meter = sampler.track("busy", "busy", proc.pid)
    wait_until(lambda: sampler.sample_now() and meter.cpu_time_s > 1.0, timeout=30, interval=0.2, what="a second of CPU")
    samples = [s for s in published if s.instance == "busy"]
    assert samples and samples[-1].cpu_time_s > 1.0
    # One busy loop: about one core, whatever else the machine does.
    assert 20.0 < max(s.cpu_percent for s in samples) <= 110.0
    assert samples[-1].peak_rss_bytes >= samples[-1].rss_bytes > 0

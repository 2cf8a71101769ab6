"""Resource limits with real children: rlimits before exec, the memory
watchdog and the CPU duty cycle (forced with PROCCTL_CGROUPS=off), their
cgroup counterparts, and live changes through `procctl limits`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import PY, Project, helper, started, wait_until

from procctl.engine import cgroups

FALLBACK = {cgroups.DISABLE_VAR: "off"}
"""The watchdog and the duty cycle, even where a cgroup could be had."""


def _limit(pid: int, label: str) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(label):
            return line[len(label) :].split()[0]
    raise AssertionError(f"{label} not in /proc/{pid}/limits")


def _start(project: Project, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = project.start("run", env=env)
    wait_until(lambda: started(project.status()) or proc.poll() is not None, what="the supervisor")
    return proc


def _status(project: Project) -> dict[str, Any]:
    return json.loads(project.run("status", "--json").stdout)


def test_memory_watchdog_stops_a_growing_tree_and_reports_the_figure(project: Project) -> None:
    project.write(f"""
        [settings]
        metrics_interval = "200ms"
        [process.hog]
        cmd = "{PY} {helper('grow.py')} 400 20 0.05; true"
        limits = {{ memory = "100MiB" }}
    """)
    result = project.run("run", "--json", env=FALLBACK)
    assert result.returncode == 1
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    hog = summary["instances"][0]
    assert hog["state"] == "limit_exceeded"
    match = re.match(r"memory ([\d.]+)MiB > 100\.0MiB", hog["reason"])
    assert match, hog["reason"]
    assert 100 < float(match.group(1)) < 400


@pytest.mark.parametrize("env", [FALLBACK, {}], ids=["watchdog", "cgroup-if-any"])
def test_memory_breach_with_on_limit_restart_restarts(project: Project, env: dict[str, str]) -> None:
    project.write(f"""
        [settings]
        metrics_interval = "100ms"
        [process.hog]
        cmd = ["{PY}", "{helper('grow.py')}", "200", "20", "0.02"]
        limits = {{ memory = "60MiB" }}
        on_limit = "restart"
        max_restarts = 2
        backoff = "50ms"
    """)
    result = project.run("run", env=env)
    assert result.returncode == 1
    assert result.stdout.count("limit exceeded: memory") == 3
    assert re.search(r"hog\s+│\s+limit exceeded\s+│.*│\s+2\s+│", result.stdout), result.stdout


def test_nofile_is_set_before_exec(project: Project) -> None:
    project.write(f"""
        [process.files]
        cmd = ["{PY}", "{helper('open_files.py')}"]
        limits = {{ nofile = 16 }}
    """)
    result = project.run("run")
    assert result.returncode == 0, result.stdout
    assert "highest fd 15; then EMFILE" in result.stdout


def test_cpu_time_ends_a_busy_loop(project: Project) -> None:
    project.write(f"""
        [process.spin]
        cmd = ["{PY}", "{helper('busy.py')}"]
        limits = {{ cpu_time = "1s" }}
    """)
    result = project.run("run", "--json", timeout=60)
    assert result.returncode == 1
    spin = json.loads(result.stdout[result.stdout.index("{") :])["instances"][0]
    assert spin["state"] == "limit_exceeded"
    assert spin["signal"] in (signal.SIGXCPU, signal.SIGKILL)


def test_limits_hold_in_a_grandchild(project: Project) -> None:
    pids = project.root / "pids"
    project.write(f"""
        [process.tree]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids}"]
        limits = {{ nofile = 48, fsize = "1MiB" }}
    """)
    proc = _start(project)
    try:
        wait_until(pids.exists)
        for pid in map(int, pids.read_text().split()):
            assert _limit(pid, "Max open files") == "48"
            assert _limit(pid, "Max file size") == str(1 << 20)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_live_nofile_change_reaches_every_process_of_the_tree(project: Project) -> None:
    pids = project.root / "pids"
    project.write(f"""
        [process.web]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids}"]
    """)
    proc = _start(project)
    try:
        wait_until(pids.exists)
        tree = list(map(int, pids.read_text().split()))
        result = project.run("limits", "web", "--nofile", "64")
        assert result.returncode == 0, result.stderr
        assert "nofile" in result.stdout and "rlimit" in result.stdout
        for pid in tree:
            assert _limit(pid, "Max open files") == "64"
        shown = json.loads(project.run("limits", "web", "--json").stdout)["instances"][0]
        assert shown["limits"]["nofile"]["value"] == [64, 64]
        assert shown["usage"]["processes"] >= 2
        assert _status(project)["instances"][0]["limits"] == {"nofile": "rlimit"}
        refused = project.run("limits", "web", "--nofile", "2")
        assert refused.returncode == 2
        assert "refused" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_live_memory_limit_below_usage_applies_on_limit(project: Project) -> None:
    project.write(f"""
        [process.hog]
        cmd = ["{PY}", "{helper('grow.py')}", "80", "80", "0"]
    """)
    proc = _start(project, env=FALLBACK)
    try:
        wait_until(lambda: "holding 80 MiB" in project.log("hog"), what="the allocation")
        result = project.run("limits", "hog", "--memory", "20MiB")
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=30) == 1
        assert "limit exceeded: memory" in proc.out_path.read_text()  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def _cpu_share(pid: int, seconds: float = 3.0) -> float:
    """Share of one core the process used over `seconds`."""
    process = psutil.Process(pid)
    first, began = process.cpu_times(), time.monotonic()
    time.sleep(seconds)
    second, ended = process.cpu_times(), time.monotonic()
    return ((second.user + second.system) - (first.user + first.system)) / (ended - began)


def test_cpu_percent_throttles_a_busy_loop(project: Project) -> None:
    project.write(f"""
        [process.spin]
        cmd = ["{PY}", "{helper('busy.py')}"]
        limits = {{ cpu_percent = 25 }}
    """)
    proc = _start(project, env=FALLBACK)
    try:
        pid = wait_until(lambda: _status(project)["instances"][0]["pid"], what="the pid")
        share = _cpu_share(pid)  # type: ignore[arg-type]
        # Throttled: never much past its quarter of a core. How far below it
        # depends on how busy the machine is, so only "it still runs" is asked.
        assert 0 < share < 0.45, share
        assert _status(project)["instances"][0]["limits"] == {"cpu_percent": "duty-cycle"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130


# ---------------------------------------------------------------- cgroups


@pytest.fixture
def kernel_limits() -> str:
    """The cgroup version procctl gets on this machine ('cgroup v1' or 'cgroup v2')."""
    host = cgroups.Host.create()
    if host is None:
        pytest.skip("this machine gives no cgroup with the memory and cpu controllers")
    host.close()
    return f"cgroup v{host.version}"


def _memory_file(label: str) -> str:
    return "memory.max" if label == "cgroup v2" else "memory.limit_in_bytes"


def _cpu_quota(group: Path, label: str) -> int:
    """The group's CPU quota in µs per 100 ms period."""
    if label == "cgroup v2":
        return int((group / "cpu.max").read_text().split()[0])
    return int((group / "cpu.cfs_quota_us").read_text())


def test_memory_cgroup_holds_the_tree_to_its_limit(project: Project, kernel_limits: str) -> None:
    events_file = project.root / "events.jsonl"
    project.write(f"""
        [process.hog]
        cmd = "{PY} {helper('grow.py')} 400 20 0.05; true"
        limits = {{ memory = "100MiB" }}
    """)
    result = project.run("run", "--json", "--events", str(events_file))
    assert result.returncode == 1
    hog = json.loads(result.stdout[result.stdout.index("{") :])["instances"][0]
    assert hog["state"] == "limit_exceeded"
    pattern = rf"memory [\d.]+MiB reached the 100\.0MiB limit \({kernel_limits}: the kernel ended \d+ process"
    assert re.match(pattern, hog["reason"]), hog["reason"]
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    over = [r for r in records if r["event"] == "limit_exceeded"]
    assert [(r["limit"], r["mechanism"], r["action"]) for r in over] == [("memory", kernel_limits, "kill")]
    # The kernel never let the tree hold more than its limit: the peak is the figure.
    assert 0 < over[0]["value"] <= over[0]["maximum"] == 100 << 20


def test_the_whole_tree_lives_in_its_cgroup_and_takes_live_changes(project: Project, kernel_limits: str) -> None:
    pids = project.root / "pids"
    project.write(f"""
        [process.web]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids}"]
        limits = {{ memory = "200MiB", cpu_percent = 50 }}
    """)
    proc = _start(project)
    try:
        wait_until(pids.exists)
        tree = list(map(int, pids.read_text().split()))
        # Every process, the grandchild that left the session too, in one group.
        groups = {cgroups.locate(("memory",), proc=Path(f"/proc/{pid}"))["memory"].own for pid in tree}
        assert len(groups) == 1, groups
        group = groups.pop()
        status = _status(project)
        assert group.parent.name == f"procctl.{status['pid']}"
        assert status["instances"][0]["limits"] == {"memory": kernel_limits, "cpu_percent": kernel_limits}
        assert int((group / _memory_file(kernel_limits)).read_text()) == 200 << 20
        cpu_group = cgroups.locate(("cpu",), proc=Path(f"/proc/{tree[0]}"))["cpu"].own
        assert _cpu_quota(cpu_group, kernel_limits) == 50_000
        result = project.run("limits", "web", "--memory", "300MiB", "--cpu-percent", "20", "--json")
        assert result.returncode == 0, result.stderr
        assert int((group / _memory_file(kernel_limits)).read_text()) == 300 << 20
        assert _cpu_quota(cpu_group, kernel_limits) == 20_000
        shown = json.loads(result.stdout)["instances"][0]["limits"]
        assert shown["memory"]["value"] == 300 << 20
        assert shown["memory"]["mechanism"].startswith(kernel_limits)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    assert not group.parent.exists(), "the supervisor left its cgroup behind"


def test_cpu_percent_by_cgroup_holds_a_busy_loop_near_its_share(project: Project, kernel_limits: str) -> None:
    project.write(f"""
        [process.spin]
        cmd = ["{PY}", "{helper('busy.py')}"]
        limits = {{ cpu_percent = 25 }}
    """)
    proc = _start(project)
    try:
        pid = wait_until(lambda: _status(project)["instances"][0]["pid"], what="the pid")
        assert _status(project)["instances"][0]["limits"] == {"cpu_percent": kernel_limits}
        share = _cpu_share(pid)  # type: ignore[arg-type]
        assert 0.10 < share < 0.40, share
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130

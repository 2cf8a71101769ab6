"""What every measurement of benchmarks/run.py shares: the result types, the
tools' paths, timing a command, and starting long-lived process trees that are
always ended (by pid and process group, never by name).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class BenchError(Exception):
    """A measurement could not be made; the suite reports it and goes on."""


# --------------------------------------------------------------------- results


@dataclasses.dataclass
class Figure:
    """One quantity of one tool, one value per round."""

    tool: str
    quantity: str
    values: list[float]
    ours: bool = False
    """procctl's own figure (the others are compared with it)."""

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclasses.dataclass
class Measurement:
    name: str
    what: str
    target: str
    figures: list[Figure]
    ours: str
    """procctl's headline figure, as text for the summary table."""
    reference: str
    """The reference's headline figure, as text ('-' when there is none)."""
    ratio: float | None
    """procctl ÷ reference of the headline quantity (see `ratio_of`)."""
    ratio_of: str
    met: bool | None
    notes: list[str] = dataclasses.field(default_factory=list)


def fmt(value: float) -> str:
    """Three significant digits, thousands separated; never scientific."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    if size >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def ratio_of(ours: Figure, reference: Figure | None) -> float | None:
    if reference is None or reference.median == 0:
        return None
    return ours.median / reference.median


def rounds_of(n: int, runners: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Alternate the tools round by round so that drift hits all alike."""
    values: dict[str, list[float]] = {name: [] for name in runners}
    for number in range(1, n + 1):
        for name, runner in runners.items():
            value = runner()
            values[name].append(value)
            progress(f"  round {number}/{n}: {name}: {fmt(value)}")
    return values


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- tools


def tool(name: str) -> str | None:
    """A tool's path. Prefer the console scripts beside this Python: pyenv
    shims on PATH are shell scripts that add tens of milliseconds to every
    call and would skew the latency comparison."""
    beside = BIN / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def procctl() -> list[str]:
    """procctl as its console script runs it: the entry point pyproject.toml
    declares, imported by this Python. Not the installed script itself, which
    goes stale when the entry point moves until `pip install -e .` is run again."""
    try:
        import tomllib

        target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["procctl"]
        module, function = target.split(":")
    except (OSError, KeyError, ValueError):
        return [sys.executable, "-m", "procctl"]
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.argv[0] = 'procctl'; sys.exit({function}())"]


def timed(argv: list[str] | str, *, cwd: Path, shell: bool = False, stdout: int | None = subprocess.DEVNULL, ok: Iterable[int] = (0,)) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, shell=shell, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - began
    if done.returncode not in tuple(ok):
        raise BenchError(f"command failed ({done.returncode}): {argv if isinstance(argv, str) else ' '.join(argv)[:200]}\n{done.stderr.decode(errors='replace')[-1500:]}")
    return took


def run_with_peak(argv: list[str], *, cwd: Path, keep_stdout: bool = False, ok: Iterable[int] = (0,)) -> tuple[float, int, bytes]:
    """Run argv to the end: its wall time, its own peak RSS and its stdout
    (empty unless kept; /dev/null otherwise). The peak is the kernel's
    high-water mark (VmHWM), read until it exits, so that a short spike
    between two readings is not missed."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
            except (OSError, ValueError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        sampler.join()
    took = time.perf_counter() - began
    if proc.returncode not in tuple(ok):
        raise BenchError(f"command failed ({proc.returncode}): {' '.join(argv)[:200]}\n{err.decode(errors='replace')[-1500:]}")
    return took, peak, out or b""


# --------------------------------------------------------------------- process trees


def become_subreaper() -> None:
    """Orphans of the trees we start are re-parented to this process rather
    than to init, so that nothing a tool leaves behind escapes the cleanup."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Started:
    """A long-lived tool started in its own session. `end()` (always called,
    from a `finally` or the `with` block) kills its group and every process of
    its tree ever seen, by pid (checked against the start time, so a reused
    pid is never hit)."""

    def __init__(self, argv: list[str], cwd: Path, *, env: dict[str, str] | None = None, stdout: Path | None = None) -> None:
        self.cwd = cwd
        self._out = open(stdout or cwd / "stdout.txt", "wb")
        self._err_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
        self._err = open(self._err_path, "wb")
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, start_new_session=True)
        _WAITED_FOR.add(self.proc.pid)
        self.root = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {}

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def tree(self) -> list[psutil.Process]:
        """Its living descendants now (and remember them for the cleanup)."""
        try:
            found = self.root.children(recursive=True)
        except psutil.Error:
            found = []
        for process in found:
            self.seen.setdefault(process.pid, process)
        return [p for p in found if _alive(p)]

    def named(self, name: str) -> list[psutil.Process]:
        found = []
        for process in self.tree():
            try:
                if process.name() == name:
                    found.append(process)
            except psutil.Error:
                pass
        return found

    def stderr(self) -> str:
        self._err.flush()
        return self._err_path.read_text(errors="replace")[-1500:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.proc.args[0]} exited early with {self.proc.returncode}: {self.stderr()}")

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds since `began` when it exited, or None if it did not in time."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return time.perf_counter() - self.began

    def end(self) -> None:
        self.tree()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for process in self.seen.values():
            try:
                if process.is_running():
                    process.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _WAITED_FOR.discard(self.proc.pid)
        self._out.close()
        self._err.close()
        reap_orphans()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *, every: float = 0.005, check: Callable[[], None] | None = None) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if check is not None:
            check()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def wait_gone(processes: list[psutil.Process], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    left = list(processes)
    while left:
        left = [p for p in left if _alive(p)]
        if not left:
            return True
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.002)
    return True


def reap_orphans() -> list[str]:
    """Kill and reap whatever was re-parented to us (we are a subreaper) and is
    not a child we still wait for. Returns a description of each one that was
    still alive: something a tool left behind."""
    left = []
    me = psutil.Process()
    for child in me.children():
        if child.pid in _WAITED_FOR:
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{child.pid} {' '.join(child.cmdline())[:80]}")
                child.kill()
            os.waitpid(child.pid, 0)
        except (psutil.Error, ChildProcessError, OSError):
            pass
    return left


_WAITED_FOR: set[int] = set()
"""Our children that are someone's business: running `Started` roots, and
supervisors that `procctl up -d` left to us (see `protect`)."""


def protect(pid: int, on: bool = True) -> None:
    (_WAITED_FOR.add if on else _WAITED_FOR.discard)(pid)


# --------------------------------------------------------------------- fleets of N sleepers

SUPERVISORD_CONF = """\
[unix_http_server]
file=%(here)s/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
minfds=8192
minprocs=2000

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock

[program:sleep]
command=sleep 600
process_name=%(program_name)s_%(process_num)04d
numprocs={n}
startsecs=0
autorestart=false
stopwaitsecs=10
"""


def procctl_manifest(root: Path, n: int, *, settings: str = "") -> Path:
    path = root / "procfile.toml"
    path.write_text(f'[settings]\nmax_parallel = {n}\nmetrics_interval = "1s"\n{settings}\n[process.s]\ncmd = ["sleep", "600"]\nreplicas = {n}\n')
    return path


def start_fleet(kind: str, root: Path, n: int) -> Started:
    """N × `sleep 600` under one of procctl, honcho or supervisord, started
    in the foreground of its own session as a user would in a terminal."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "procctl":
        procctl_manifest(root, n)
        return Started([*procctl(), "run", "--plain"], root)
    if kind == "honcho":
        (root / "Procfile").write_text("".join(f"s{i:04d}: sleep 600\n" for i in range(n)))
        return Started([tool("honcho") or "honcho", "start", "-f", "Procfile"], root)
    if kind == "supervisord":
        (root / "supervisord.conf").write_text(SUPERVISORD_CONF.replace("{n}", str(n)))
        return Started([tool("supervisord") or "supervisord", "-c", str(root / "supervisord.conf")], root)
    raise ValueError(kind)


def fleet_kinds() -> list[str]:
    kinds = ["procctl"]
    for peer in ("honcho", "supervisord"):
        if tool(peer):
            kinds.append(peer)
        else:
            progress(f"  {peer} is not installed: its row is skipped")
    return kinds


def wait_running(started: Started, n: int, timeout: float = 120.0) -> float:
    """Seconds from the tool's start until N `sleep` processes of its tree run."""
    wait_for(lambda: len(started.named("sleep")) >= n, timeout, f"{n} processes under {started.proc.args[0]}", check=started.check_alive)
    return time.perf_counter() - started.began


def stop_gracefully(started: Started, timeout: float = 30.0) -> None:
    """Ctrl-C: SIGINT to the tool's process group, as a terminal sends it."""
    try:
        os.killpg(started.proc.pid, signal.SIGINT)
    except OSError:
        return
    started.wait_exit(timeout)

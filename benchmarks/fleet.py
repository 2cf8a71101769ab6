"""Long-lived processes: bring-up, idle overhead and shutdown of 200 sleepers
under procctl, honcho and supervisord; control latency against a running
supervisor; and 1000 processes at once (with the live view's frame time)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redraw
import view
from harness import (
    BenchError,
    Figure,
    Measurement,
    Started,
    _alive,
    fleet_kinds,
    fmt,
    procctl,
    procctl_manifest,
    progress,
    protect,
    ratio_of,
    reap_orphans,
    start_fleet,
    stop_gracefully,
    timed,
    tool,
    wait_for,
    wait_gone,
    wait_running,
)

N = 200
LABELS = {"procctl": "procctl run", "honcho": "honcho start", "supervisord": "supervisord"}
MIB = 1 << 20


def _reference(figures: list[Figure], quantity: str) -> Figure | None:
    """The peer a user of long-lived services compares with: supervisord, else honcho."""
    for name in ("supervisord", "honcho start"):
        for figure in figures:
            if figure.tool.startswith(name) and figure.quantity == quantity:
                return figure
    return None


def _ref_text(reference: Figure | None, unit: str) -> str:
    return f"{fmt(reference.median)} {unit} ({reference.tool})" if reference else "-"


# --------------------------------------------------------------------- bring-up


def bringup(rounds: int, quick: bool) -> Measurement:
    kinds = fleet_kinds()
    values: dict[str, list[float]] = {LABELS[k]: [] for k in kinds}
    values["procctl up -d"] = []
    for number in range(1, rounds + 1):
        for kind in kinds:
            with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp, start_fleet(kind, Path(tmp), N) as started:
                try:
                    took = wait_running(started, N)
                finally:
                    stop_gracefully(started)
            values[LABELS[kind]].append(took)
            progress(f"  round {number}/{rounds}: {LABELS[kind]}: {took:.3f} s")
        values["procctl up -d"].append(_up_down(N)[0])
    figures = [Figure(name, "s until all run", v, ours=name.startswith("procctl")) for name, v in values.items()]
    ours = figures[0]
    reference = _reference(figures, ours.quantity)
    return Measurement(
        "bring-up", f"{N} × `sleep 600` running, from the tool's start until {N} `sleep` processes exist in its tree", "≤ 1 s", figures,
        f"{fmt(ours.median)} s", _ref_text(reference, "s"), ratio_of(ours, reference), "seconds of procctl ÷ seconds of the reference",
        ours.median <= 1.0,
        [
            "every tool is started in the foreground, in its own session; the clock starts just before its exec and stops when the "
            f"{N}th `sleep` of its tree is seen in /proc (polled every 5 ms)",
            "`procctl up -d` is the whole command, which returns once the supervisor reports every instance started",
        ],
    )


def _supervisor_pid(root: Path) -> int | None:
    done = subprocess.run([*procctl(), "status", "--json"], cwd=root, capture_output=True)
    return json.loads(done.stdout)["pid"] if done.returncode == 0 else None


def _kill_ours_for(manifest: Path) -> None:
    """After `up -d`: its supervisor was re-parented to us; kill it and its
    tree, whatever state it is in."""
    for child in psutil.Process().children():
        try:
            if str(manifest) in " ".join(child.cmdline()):
                tree = child.children(recursive=True)
                os.killpg(child.pid, signal.SIGKILL)
                for process in tree:
                    process.kill()
        except (psutil.Error, OSError):
            pass
    reap_orphans()


def _up_down(n: int, *, while_up: object = None) -> tuple[float, float, object]:
    """`procctl up -d` of n sleepers, then `procctl down`; the time of each
    and what `while_up(root)` returned in between."""
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        manifest = procctl_manifest(root, n)
        pid = None
        try:
            up = timed([*procctl(), "up", "-d", "--wait-timeout", "300s"], cwd=root)
            pid = _supervisor_pid(root)
            if pid is not None:
                protect(pid)
            between = while_up(root) if callable(while_up) else None
            down = timed([*procctl(), "down", "--timeout", "120s"], cwd=root)
            return up, down, between
        finally:
            if pid is not None:
                protect(pid, False)
            _kill_ours_for(manifest)


# --------------------------------------------------------------------- idle


def _helpers(started: Started) -> list[psutil.Process]:
    """The tool's own processes besides the supervisor: honcho's one Python
    per child, procctl's guardian. Not the sleepers."""
    found = []
    for process in started.tree():
        try:
            # honcho runs each command through /bin/sh, which waits for `sleep`: the shell is the child's, not honcho's.
            if process.name() not in ("sleep", "sh", "dash", "bash"):
                found.append(process)
        except psutil.Error:
            pass
    return found


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def idle(rounds: int, quick: bool) -> Measurement:
    window = 5.0 if quick else 10.0
    kinds = fleet_kinds()
    cpu: dict[str, list[float]] = {LABELS[k]: [] for k in kinds}
    rss: dict[str, list[float]] = {LABELS[k]: [] for k in kinds}
    helper_notes: dict[str, str] = {}
    for number in range(1, rounds + 1):
        for kind in kinds:
            with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp, start_fleet(kind, Path(tmp), N) as started:
                try:
                    wait_running(started, N)
                    time.sleep(3.0)  # past the start-up work, a few metric samples in
                    helpers = _helpers(started)
                    # honcho's supervisor is its main process plus one helper per child: count them all.
                    watched = [started.root] + (helpers if kind == "honcho" else [])
                    before, began = _cpu(watched), time.perf_counter()
                    helpers_before = _cpu(helpers)
                    time.sleep(window)
                    elapsed = time.perf_counter() - began
                    percent = 100.0 * (_cpu(watched) - before) / elapsed
                    helpers_percent = 100.0 * (_cpu(helpers) - helpers_before) / elapsed
                    memory = started.root.memory_info().rss
                    helper_uss = sum(p.memory_full_info().uss for p in helpers if _alive(p))
                    if kind == "honcho":
                        memory += helper_uss
                    started.check_alive()
                finally:
                    stop_gracefully(started)
            cpu[LABELS[kind]].append(percent)
            rss[LABELS[kind]].append(memory / MIB)
            helper_notes[kind] = f"{len(helpers)} helper process(es), {helper_uss / MIB:.1f} MiB USS, {helpers_percent:.2f} % CPU"
            progress(f"  round {number}/{rounds}: {LABELS[kind]}: {percent:.2f} % CPU, {memory / MIB:.1f} MiB")
    figures = [Figure(name, "CPU % of one core", v, ours=name.startswith("procctl")) for name, v in cpu.items()]
    figures += [Figure(name, "RSS MiB", v, ours=name.startswith("procctl")) for name, v in rss.items()]
    ours_cpu, ours_rss = figures[0], figures[len(cpu)]
    reference = _reference(figures, ours_cpu.quantity)
    ref_rss = _reference(figures, ours_rss.quantity)
    notes = [
        f"{N} × `sleep 600`, procctl with `metrics_interval = \"1s\"` (it samples the tree of every instance each second; the peers sample nothing); "
        f"CPU time (user + system) of the supervisor process over {window:g} s, 3 s after all {N} run; RSS at the end of the window",
        "honcho forks one Python process per child to relay its output: its CPU and memory count them (RSS of the main process + USS of the helpers)",
    ]
    notes += [f"{LABELS[k]} helpers, last round: {text}" for k, text in helper_notes.items()]
    if ref_rss is not None:
        notes.append(f"RSS ratio procctl ÷ {ref_rss.tool}: {ours_rss.median / ref_rss.median:.2f}")
    return Measurement(
        "idle", f"{N} sleeping processes, metrics at 1 Hz", "≤ 2 % of one core, ≤ 60 MiB RSS", figures,
        f"{ours_cpu.median:.2f} % CPU, {ours_rss.median:.1f} MiB", _ref_text(reference, "% CPU"), ratio_of(ours_cpu, reference),
        "CPU % of procctl ÷ CPU % of the reference", ours_cpu.median <= 2.0 and ours_rss.median <= 60.0, notes,
    )


# --------------------------------------------------------------------- shutdown


def shutdown(rounds: int, quick: bool) -> Measurement:
    kinds = fleet_kinds()
    gone: dict[str, list[float]] = {LABELS[k]: [] for k in kinds}
    exited: dict[str, list[float]] = {LABELS[k]: [] for k in kinds}
    leftovers: list[str] = []
    for number in range(1, rounds + 1):
        for kind in kinds:
            with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp, start_fleet(kind, Path(tmp), N) as started:
                wait_running(started, N)
                time.sleep(1.0)
                sleepers = started.named("sleep")
                everyone = started.tree()
                began = time.perf_counter()
                os.killpg(started.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal
                if not wait_gone(sleepers, 60.0):
                    raise BenchError(f"{LABELS[kind]}: {sum(_alive(p) for p in sleepers)} of {N} processes still alive 60 s after SIGINT")
                all_gone = time.perf_counter() - began
                if started.wait_exit(60.0) is None:
                    raise BenchError(f"{LABELS[kind]} did not exit within 60 s of SIGINT")
                own_exit = time.perf_counter() - began
                time.sleep(0.2)
                left = [p for p in everyone if _alive(p)]
                if left:
                    leftovers.append(f"{LABELS[kind]}: {len(left)} process(es) of its tree still alive after it exited ({left[0].name()} …)")
            gone[LABELS[kind]].append(all_gone)
            exited[LABELS[kind]].append(own_exit)
            progress(f"  round {number}/{rounds}: {LABELS[kind]}: children gone {all_gone:.3f} s, tool exited {own_exit:.3f} s")
    figures = [Figure(name, "s until all children gone", v, ours=name.startswith("procctl")) for name, v in gone.items()]
    figures += [Figure(name, "s until the tool itself exited", v, ours=name.startswith("procctl")) for name, v in exited.items()]
    ours = figures[0]
    reference = _reference(figures, ours.quantity)
    notes = [
        f"{N} × `sleep 600` (they die on SIGTERM); SIGINT is sent to the tool's process group as Ctrl-C in a terminal does; "
        "the clock stops when no recorded `sleep` is left (a zombie counts as gone)",
    ]
    notes += leftovers or ["no tool left a process of its tree behind"]
    return Measurement(
        "shutdown", f"{N} processes that obey SIGTERM, Ctrl-C until all are gone", "≤ 0.5 s", figures,
        f"{fmt(ours.median)} s", _ref_text(reference, "s"), ratio_of(ours, reference), "seconds of procctl ÷ seconds of the reference",
        ours.median <= 0.5, notes,
    )


# --------------------------------------------------------------------- control latency


def control(rounds: int, quick: bool) -> Measurement:
    calls = 5 if quick else 10
    supervisorctl = tool("supervisorctl")
    n = 5
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        ours_dir, theirs_dir = Path(tmp) / "procctl", Path(tmp) / "supervisord"
        with start_fleet("procctl", ours_dir, n) as ours:
            wait_running(ours, n)
            status = [*procctl(), "status", "--json"]
            wait_for(lambda: subprocess.run(status, cwd=ours_dir, capture_output=True).returncode == 0, 30, "procctl status")
            runners = {"procctl status --json": lambda: timed(status, cwd=ours_dir)}
            theirs = None
            notes = [f"a supervisor of {n} × `sleep 600`; each command is run {calls} times a round, interleaved, after one untimed call"]
            try:
                if supervisorctl and tool("supervisord"):
                    theirs = start_fleet("supervisord", theirs_dir, n)
                    wait_running(theirs, n)
                    ctl = [supervisorctl, "-c", str(theirs_dir / "supervisord.conf"), "status"]
                    wait_for(lambda: subprocess.run(ctl, capture_output=True).returncode == 0, 30, "supervisorctl status", every=0.1)
                    runners["supervisorctl status"] = lambda: timed(ctl, cwd=theirs_dir)
                else:
                    notes.append("supervisord/supervisorctl are not installed here: their row is skipped")
                runners["python -c pass"] = lambda: timed([sys.executable, "-c", "pass"], cwd=ours_dir)
                # Without the site module: what every Python tool pays for it here shows as the difference.
                runners["python -S -c pass"] = lambda: timed([sys.executable, "-S", "-c", "pass"], cwd=ours_dir)
                for run in runners.values():
                    run()  # warm the page cache
                values: dict[str, list[float]] = {name: [] for name in runners}
                for number in range(1, rounds + 1):
                    for _ in range(calls):
                        for name, run in runners.items():
                            values[name].append(run() * 1000)
                    progress("  round " + f"{number}/{rounds}: " + ", ".join(f"{k} {fmt(sorted(v)[len(v) // 2])} ms" for k, v in values.items()))
            finally:
                if theirs is not None:
                    stop_gracefully(theirs)
                    theirs.end()
                stop_gracefully(ours)
    figures = [Figure(name, "ms per call", v, ours=name.startswith("procctl")) for name, v in values.items()]
    ours_fig = figures[0]
    reference = next((f for f in figures if f.tool.startswith("supervisorctl")), None)
    baseline = next(f for f in figures if f.tool == "python -c pass")
    bare = next(f for f in figures if f.tool == "python -S -c pass")
    notes.append(
        "in units of `python -c pass`: "
        + ", ".join(f"{f.tool} {f.median / baseline.median:.1f} ×" for f in figures if f.tool.startswith(("procctl", "supervisorctl")))
    )
    ratio = ratio_of(ours_fig, reference)
    site = baseline.median - bare.median
    if reference is not None and site > 0:
        # On this machine the site module costs far more than usual (a .pth file of the environment imports certifi at every
        # start): a cost both tools pay alike, which pulls the ratio towards 1.
        notes.append(
            f"the site module costs {fmt(site)} ms per Python start here (`python -c pass` − `python -S -c pass`; normally a few ms: "
            f"check the site-packages .pth files); with it taken off both, the ratio would be "
            f"{(ours_fig.median - site) / (reference.median - site):.2f}"
        )
    return Measurement(
        "control", "`procctl status --json` against a running supervisor", "≤ 0.5 × `supervisorctl status`", figures,
        f"{fmt(ours_fig.median)} ms", _ref_text(reference, "ms"), ratio, "ms of procctl status ÷ ms of supervisorctl status",
        ratio is not None and ratio <= 0.5, notes,
    )


# --------------------------------------------------------------------- scale


def _can_take(n: int) -> str | None:
    """Why this machine cannot supervise n more processes, or None."""
    import resource

    procs = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if procs != resource.RLIM_INFINITY and procs < len(psutil.pids()) + n + 200:
        return f"RLIMIT_NPROC is {procs}"
    if files != resource.RLIM_INFINITY and files < 6 * n + 100:
        return f"RLIMIT_NOFILE is {files} (procctl holds a few descriptors per child)"
    if psutil.virtual_memory().available < n * (2 << 20) + (1 << 30):
        return "too little free memory"
    return None


def _keys(n: int, presses: int) -> list[float]:
    """Key-to-screen latencies of the interactive view of `procctl run` of
    n sleepers on a pseudo-terminal (benchmarks/view.py)."""
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        manifest = procctl_manifest(root, n)
        try:
            return view.key_latencies([*procctl(), "run"], root, presses, ready=f"running {n} ")
        finally:
            _kill_ours_for(manifest)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def scale(rounds: int, quick: bool) -> Measurement:
    rows, frames = 1000, 20 if quick else 50
    folded = redraw.frame_times(rows, frames, width=200, height=50)
    every_row = redraw.frame_times(rows, frames, width=200, height=rows + 100)
    interactive = view.frame_times(rows, frames, width=200, height=50)
    figures = [
        Figure("procctl interactive view, 1000 rows, 200×50 screen", "ms per frame", interactive, ours=True),
        Figure("procctl live table (no keys), 1000 rows, 200×50 screen", "ms per frame", folded, ours=True),
        Figure("procctl live table (no keys), 1000 rows, all drawn (height 1100)", "ms per frame", every_row, ours=True),
    ]
    notes = [
        f"interactive view: {frames} frames of the Textual app headless (its own test harness), 1000 rows with metrics, sparklines and "
        "coloured output; a frame folds one redraw period's events (1000 rows sampled at 1 Hz, drawn at 8 frames/s, plus 20 output lines) and "
        "does what Textual's update timer does: lays out and renders what changed and hands it to the driver",
        f"frame time of the interactive view: median {fmt(statistics.median(interactive))} ms, max {fmt(max(interactive))} ms",
        f"live table without keys (stdin not a terminal): {frames} frames of `Renderer(LiveModel(...)).render(200, height)` printed to a rich "
        f"Console on a StringIO, as a 256-color terminal; median {fmt(statistics.median(folded))} ms, max {fmt(max(folded))} ms; every row drawn: "
        f"median {fmt(statistics.median(every_row))} ms, max {fmt(max(every_row))} ms",
    ]
    keys_ok: bool | None = None
    why = _can_take(rows)
    if importlib.util.find_spec("pyte") is None:  # the terminal emulator the key measurement reads the screen with
        notes.append("keys were not measured: pyte is not installed (pip install -e '.[test]')")
    else:
        if why:
            notes.append(f"keys at {rows} processes were not measured: {why}")
        else:
            presses = 20 if quick else 60
            try:
                few = _keys(10, presses)
                many = _keys(rows, presses)
                figures.append(Figure(f"key to screen, `procctl run` of {rows} processes (pty 200×50)", "ms", many, ours=True))
                figures.append(Figure("key to screen, `procctl run` of 10 processes (pty 200×50)", "ms", few))
                keys_ok = _p95(many) <= 100.0
                notes.append(
                    f"keys: {presses} presses of j/k written to the pseudo-terminal of a real `procctl run` (its interactive view, in the supervisor's "
                    "process), timed until the selection shows on its new row (the screen read through pyte, and read to its end before each key); "
                    f"at {rows} processes median {fmt(statistics.median(many))} ms, p95 {fmt(_p95(many))} ms, max {fmt(max(many))} ms; "
                    f"at 10 processes median {fmt(statistics.median(few))} ms, p95 {fmt(_p95(few))} ms; ratio of the medians "
                    f"{statistics.median(many) / statistics.median(few):.2f}"
                )
            except (BenchError, RuntimeError, OSError) as exc:
                notes.append(f"keys at {rows} processes: {exc}")
    answered = False
    why = _can_take(rows)
    if why:
        notes.append(f"1000 supervised processes were not tried: {why}")
    else:
        try:
            def while_up(root: Path) -> tuple[list[float], int, float]:
                times, running = [], 0
                for _ in range(5):
                    began = time.perf_counter()
                    done = subprocess.run([*procctl(), "status", "--json"], cwd=root, capture_output=True, timeout=60)
                    times.append((time.perf_counter() - began) * 1000)
                    if done.returncode != 0:
                        raise BenchError(f"procctl status failed at {rows} processes: {done.stderr.decode(errors='replace')[-500:]}")
                    running = sum(1 for row in json.loads(done.stdout)["instances"] if row["state"] == "running")
                supervisor = psutil.Process(json.loads(done.stdout)["pid"])
                before, began = _cpu([supervisor]), time.perf_counter()
                time.sleep(5.0)
                percent = 100 * (_cpu([supervisor]) - before) / (time.perf_counter() - began)
                return times, running, percent

            up, down, (times, running, percent) = _up_down(rows, while_up=while_up)  # type: ignore[misc]
            answered = running == rows
            figures.append(Figure(f"procctl status --json at {rows} processes", "ms per call", times, ours=True))
            notes.append(
                f"`procctl up -d` of {rows} × `sleep 600` took {up:.2f} s; `procctl status --json` answered in a median {fmt(statistics.median(times))} ms "
                f"and listed {running} running; the supervisor used {percent:.1f} % of a core sampling {rows} trees at 1 Hz; `procctl down` took {down:.2f} s"
            )
        except (BenchError, subprocess.TimeoutExpired) as exc:
            notes.append(f"at {rows} processes: {exc}")
    median = max(statistics.median(interactive), statistics.median(folded))
    key_text = ""
    if keys_ok is not None:
        many = next(figure.values for figure in figures if figure.quantity == "ms" and figure.ours)
        key_text = f"; keys p95 {fmt(_p95(many))} ms"
    return Measurement(
        "scale", f"{rows} instances: live redraw, keys, and commands while {rows} processes run",
        "redraw ≤ 50 ms, keys answered within 100 ms, every command still answers", figures,
        f"{fmt(statistics.median(interactive))} ms a frame (max {fmt(max(interactive))}){key_text}; status {'answers' if answered else 'did not answer'}",
        "-", None, "-",
        None if keys_ok is None else median <= 50.0 and answered and keys_ok, notes,
    )


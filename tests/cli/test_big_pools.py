"""Big pools are lazy: a million `each` items are checked without making
them, run with only what the pool admits held in memory, and a stop stops
the queue at once. A manifest of thousands of processes loads in linear
work. (How fast is the benchmarks' business: benchmarks/bigpool.py; here
only what can be counted.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from fakes import FakeExecutor

from conftest import Project, wait_until
from procctl import events
from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import EAGER_JOBS, build_plan
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor
from procctl.states import State

MIB = 1 << 20


def _million(tmp_path: Path, cmd: str = "echo {item}") -> Path:
    path = tmp_path / "procfile.toml"
    path.write_text(f'[settings]\nmax_parallel = 4\n[process.t]\ncmd = "{cmd}"\neach = {{ range = [1, 1000000] }}\n')
    return path


def test_a_million_items_are_planned_without_being_made(tmp_path: Path) -> None:
    """Loading, planning and everything `check` prints of a million-item
    range allocate a few MiB at most (made, a million jobs would be
    hundreds); any one item is still there when asked for."""
    from procctl.cli.planning import load_predictions
    from procctl.ui.plan import plan_json, plan_table

    path = _million(tmp_path)
    tracemalloc.start()
    try:
        plan = build_plan(load_manifest(path))
        plan_table(plan)
        shown = plan_json(plan, load_predictions(plan, StateDir.beside(path), print, always=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, peak
    assert len(plan.jobs) == 1_000_000 and shown["processes"][0]["instance_count"] == 1_000_000
    job = plan.jobs[999_999]
    assert (job.name, job.cmd, job.env["PROCCTL_ITEM"]) == ("t[1000000]", "echo '1000000'", "1000000")
    assert plan.jobs.named("t[7]").cmd == "echo '7'"  # type: ignore[union-attr]
    assert plan.jobs.named("t[1000001]") is None and plan.jobs.named("t[07]") is None


def test_check_of_a_million_items_stays_small(project: Project) -> None:
    """The real `procctl check`: its whole peak RSS (ru_maxrss) stays far
    under what a million made items would take (683 MB before)."""
    _million(project.root)
    probe = textwrap.dedent("""
        import resource, sys
        from procctl.entry import main
        sys.argv = ["procctl", "check"]
        try:
            main()
        except SystemExit as exit:
            code = exit.code
        print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120)
    code, maxrss_kib = done.stderr.split()[-2:]
    assert code == "0", done.stderr
    assert "1 processes, 1000000 instances" in done.stdout
    assert int(maxrss_kib) * 1024 < 120 * MIB, maxrss_kib


@pytest.mark.slow
def test_a_big_pool_holds_only_what_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 items through fake children, 4 at a time, as a big pool (the
    threshold lowered to 100 for the test: a real one takes minutes): never
    more than the pool's 4 instances held at once, less memory than the same
    run takes made whole (1-3.5 MiB measured, against 6.4), and every item's
    result in the ledger, in order."""
    import procctl.engine.bigpools as bigpools_module

    monkeypatch.setattr(bigpools_module, "EAGER_JOBS", 100)
    count = 3000
    path = tmp_path / "procfile.toml"
    path.write_text(f'[settings]\nmax_parallel = 4\n[process.t]\ncmd = "exit 0 {{item}}"\neach = {{ range = [1, {count}] }}\n')
    plan = build_plan(load_manifest(path))
    bus = Bus()
    supervisor = Supervisor(plan, bus, StateDir.beside(path), executor=FakeExecutor(keep=False))
    assert list(supervisor.feeders) == ["t"] and supervisor.runners == []
    held: list[int] = []
    bus.subscribe(lambda event: held.append(len(supervisor.runners)) if isinstance(event, events.Started) else None)
    tracemalloc.start()
    try:
        result = asyncio.run(supervisor.run())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(held) == count and max(held) <= 4
    assert peak < 5 * MIB, peak
    assert result.exit_code == 0 and len(result.instances) == count
    assert [r.name for r in result.instances[:3]] == ["t[1]", "t[2]", "t[3]"]
    assert all(r.state is State.EXITED and r.exit_code == 0 for r in result.instances)
    assert supervisor.runners == []


@pytest.mark.parametrize("items", [200, EAGER_JOBS + 1], ids=["small pool", "big pool"])
@pytest.mark.parametrize("stop", ["timeout", "ctrl-c"])
def test_a_stop_stops_the_queue_at_once(project: Project, items: int, stop: str) -> None:
    """1. A pool of `items` jobs, 3 at a time, each marking that it started
    and then sleeping. 2. --timeout 2s, or Ctrl-C once three run. 3. Nothing
    starts after the stop: three markers, three `started` events, each before
    the `stopping` notice; exit 124 or 130."""
    (project.root / "started").mkdir()
    project.write(f"""
        [settings]
        max_parallel = 3
        [process.job]
        cmd = "touch started/{{item}}; exec sleep 30"
        each = {{ range = [1, {items}] }}
    """)
    args = ["run", "--plain", "--events", "events.jsonl"] + (["--timeout", "2s"] if stop == "timeout" else [])
    proc = project.start(*args)
    wait_until(lambda: len(list((project.root / "started").iterdir())) >= 3, what="three jobs to start")
    if stop == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == (124 if stop == "timeout" else 130)
    records = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines()]
    stopping = [r["ts"] for r in records if r["event"] == "notice" and r["message"].startswith("stopping: ")]
    started = [r["ts"] for r in records if r["event"] == "started"]
    assert len(stopping) == 1 and len(started) == 3
    assert max(started) < stopping[0]
    assert sorted(p.name for p in (project.root / "started").iterdir()) == ["1", "2", "3"]
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert f"{items - 3} skipped" in out and "3 stopped" in out


def _traced_lines(text: str, tmp_path: Path) -> int:
    """Lines of Python run (in procctl.config) to load `text`: a count, not a time."""
    path = tmp_path / "procfile.toml"
    path.write_text(text)
    lines = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal lines
        if "procctl/config" in frame.f_code.co_filename:
            lines += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        build_plan(load_manifest(path))
    finally:
        sys.settrace(None)
    return lines


def test_loading_many_processes_is_linear(tmp_path: Path) -> None:
    """Twice the processes (each depending on the one before) run about
    twice the lines of the loader and planner, not four times (a list of all
    names per process, a scan of every job per process)."""

    def manifest(n: int) -> str:
        return "".join(f'[process.p{i}]\ncmd = "sleep 1"\n' + (f'depends_on = ["p{i - 1}"]\n' if i % 10 else "") for i in range(n))

    small = _traced_lines(manifest(500), tmp_path)
    large = _traced_lines(manifest(1000), tmp_path)
    assert large / small < 2.3, (small, large)
    plan = build_plan(load_manifest(tmp_path / "procfile.toml"))
    assert plan.jobs_of("p999") is plan.jobs.of("p999") and [job.name for job in plan.jobs_of("p999")] == ["p999"]


@pytest.mark.parametrize("items", [10, 200], ids=["small pool", "big pool"])
def test_a_slot_freed_just_before_a_stop_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: int) -> None:
    """1. Three fake jobs run, the rest wait. 2. One ends, and in the same
    turn of the loop a stop is asked for: its slot goes to the next in line,
    whose turn comes after the stop. 3. Nothing starts: three children in
    all, the rest skipped."""
    import procctl.engine.bigpools as bigpools_module

    monkeypatch.setattr(bigpools_module, "EAGER_JOBS", 100)
    path = tmp_path / "procfile.toml"
    path.write_text(f'[settings]\nmax_parallel = 3\nfail_fast = false\n[process.job]\ncmd = "run {{item}}"\neach = {{ range = [1, {items}] }}\n')
    executor = FakeExecutor()
    supervisor = Supervisor(build_plan(load_manifest(path)), Bus(), StateDir.beside(path), executor=executor)

    async def main() -> None:
        running = asyncio.ensure_future(supervisor.run())
        # The children start on the spawner's threads: wait for the three
        # with a deadline, not a count of the loop's turns.
        deadline = time.monotonic() + 30
        while not (len(executor.children) == 3 and all(child.running for child in executor.children)):
            assert time.monotonic() < deadline, f"three children did not start: {len(executor.children)}"
            await asyncio.sleep(0.005)
        executor.children[0].exit(0)
        supervisor.request_stop("test")
        result = await running
        states = [r.state for r in result.instances]
        assert len(executor.children) == 3, [c.command for c in executor.children]
        assert states.count(State.EXITED) == 1 and states.count(State.STOPPED) == 2 and states.count(State.SKIPPED) == items - 3

    asyncio.run(main())


def test_a_stopped_million_sums_up_without_a_result_per_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three of a million items ran before a stop: the summary table and its
    closing lines count the 999,997 others as skipped without making a
    result for each (a million made took seconds after "stopping")."""
    from procctl.engine.feeder import Ledger
    from procctl.engine.outcome import InstanceResult, Results, RunResult
    from procctl.ui.summary import summary_lines, summary_table

    ledger = Ledger("t", 1_000_000, tmp_path)
    for index, state, code in [(0, State.EXITED, 0), (1, State.FAILED, 3), (2, State.STOPPED, 143)]:
        ledger.record(index, state, InstanceResult(name=f"t[{index + 1}]", process="t", state=state, exit_code=code, duration_s=0.5))
    made = 0
    make = Ledger.__getitem__

    def counted(self: Ledger, index: int) -> InstanceResult:  # type: ignore[override]
        nonlocal made
        made += 1
        return make(self, index)

    monkeypatch.setattr(Ledger, "__getitem__", counted)
    result = RunResult(Results([], [ledger], order=["t"]), exit_code=130)
    table = summary_table(result)
    lines = summary_lines(result)
    assert made <= 10  # the three that ran, for each of the two, and the first (Results finds its process)
    assert lines[0].endswith(": 1 exited, 1 failed, 1 stopped, 999997 skipped"), lines
    statuses = [row[1] for row in table.rows]
    assert statuses[-1] == "1 exited 0, 1 failed 3, 1 stopped, 999997 skipped", statuses
    assert [row[0] for row in table.rows] == ["t[2]", "t[3]", "t (1000000 instances)"]


@pytest.mark.parametrize("failing", [None, 7], ids=["all succeed", "one fails"])
def test_a_dependency_on_a_big_pool_judges_its_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: int | None) -> None:
    """1. A big pool of 200 fake jobs (the threshold lowered to 100), each
    `exit 0` but, in one case, item 7 `exit 3`. 2. A process waits for the
    pool to have succeeded. 3. It starts once all 200 are in the ledger; or,
    with item 7 failed, it is skipped for that item, named with its status,
    as the ledger recorded it."""
    import procctl.engine.bigpools as bigpools_module

    monkeypatch.setattr(bigpools_module, "EAGER_JOBS", 100)
    items = ", ".join(f'"{3 if i == failing else 0}"' for i in range(1, 201))
    path = tmp_path / "procfile.toml"
    path.write_text(
        f'[settings]\nmax_parallel = 4\nfail_fast = false\n[process.t]\ncmd = ["exit", "{{item}}"]\neach = [{items}]\n'
        '[process.after]\ncmd = "exit 0"\ndepends_on = { t = "succeeded" }\n'
    )
    supervisor = Supervisor(build_plan(load_manifest(path)), Bus(), StateDir.beside(path), executor=FakeExecutor(keep=False))
    assert list(supervisor.feeders) == ["t"]
    result = asyncio.run(supervisor.run())
    by_name = {r.name: r for r in result.instances}
    assert len(by_name) == 201
    after = by_name["after"]
    if failing is None:
        assert after.state is State.EXITED and result.exit_code == 0
    else:
        assert by_name["t[7]"].state is State.FAILED and by_name["t[7]"].exit_code == 3
        assert after.state is State.SKIPPED and after.reason == "dependency t[7] failed 3, not succeeded", after.reason

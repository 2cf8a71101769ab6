"""The pool's order, admission and adaptive size. The machine's free memory and
CPU load cannot be set by a test, so they come through the pool's probes; the
jobs in the supervisor test are real children."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from conftest import helper

from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.engine import pool as pool_module
from procctl.engine.pool import Pool
from procctl.engine.predict import PastRun, Prediction, command_key, lpt_order, predict
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor

MiB = 1 << 20


def test_predictions_use_own_history_then_siblings(tmp_path: Path) -> None:
    path = tmp_path / "procfile.toml"
    path.write_text('[process.t]\ncmd = "sleep {item}"\neach = ["1", "2", "3"]\n')
    plan = build_plan(load_manifest(path))
    first, second, third = plan.jobs
    runs = [
        PastRun("t", command_key(first), 1.0, 10 * MiB, ended_at=1),
        PastRun("t", command_key(first), 3.0, 30 * MiB, ended_at=2),
        PastRun("t", command_key(first), 2.0, 20 * MiB, ended_at=3),
        PastRun("t", command_key(second), 8.0, 80 * MiB, ended_at=4),
    ]
    predictions = predict(plan.jobs, runs)
    assert predictions[first.name] == Prediction(2.0, 20 * MiB, "history")
    assert predictions[second.name] == Prediction(8.0, 80 * MiB, "history")
    assert predictions[third.name] == Prediction(5.0, 50 * MiB, "siblings")
    assert [job.name for job in lpt_order(plan.jobs, predictions)] == [second.name, third.name, first.name]


def test_a_service_takes_no_slot_and_waits_only_for_a_held_queue() -> None:
    async def main() -> list[str]:
        pool = Pool(1)
        log = []
        job = await pool.acquire(name="job")
        # The only slot is taken: a service still enters, and counts nowhere.
        assert await pool.enter() == pool_module.UNBOUNDED
        assert pool.running == 1
        pool.release(pool_module.UNBOUNDED)
        assert pool.running == 1
        pool.hold(True)
        service = asyncio.ensure_future(pool.enter())
        await asyncio.sleep(0)
        log.append(f"held: entered {service.done()}")
        pool.hold(False)
        await service
        log.append(f"released: entered {service.done()}")
        pool.release(job)
        assert pool.running == 0
        return log

    assert asyncio.run(main()) == ["held: entered False", "released: entered True"]


def test_waiters_leave_in_priority_order_then_arrival() -> None:
    async def scenario() -> list[str]:
        pool = Pool(1)
        order: list[str] = []
        first = await pool.acquire(name="running")

        async def job(name: str, priority: float) -> None:
            ticket = await pool.acquire(priority=priority, name=name)
            order.append(name)
            await asyncio.sleep(0)
            pool.release(ticket)

        tasks = [asyncio.ensure_future(job(n, p)) for n, p in (("short", -1), ("long", -9), ("unknown", 0), ("mid", -5), ("unknown2", 0))]
        await asyncio.sleep(0.01)
        pool.release(first)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["long", "mid", "short", "unknown", "unknown2"]


def _admitted_at_once(pool: Pool, **kwargs: object) -> int | None:
    """The ticket when `acquire` returned without waiting for anything (not
    even a turn of the loop), else None (the waiter is cancelled)."""
    asking = pool.acquire(**kwargs)  # type: ignore[arg-type]
    try:
        awaited = asking.send(None)
    except StopIteration as done:
        return done.value
    awaited.cancel()  # its place in the queue
    asking.close()
    return None


def test_in_arrival_order_a_free_slot_is_taken_at_once_and_the_order_holds() -> None:
    """FIFO: a job that finds a slot free and nobody waiting is in at once
    (2000 jobs asking at a run's start used to wait until all had asked);
    one that finds the pool full waits, and waiters still leave in arrival
    order, before any newcomer. Ordered by priority, an asker waits for
    the turn's others (one of them may come first)."""

    async def scenario() -> tuple[list[int | None], list[str], int | None]:
        pool = Pool(2, ordered=False)
        at_once = [_admitted_at_once(pool, name="a"), _admitted_at_once(pool, name="b")]
        assert pool.running == 2
        at_once.append(_admitted_at_once(pool, name="full"))  # full: it waits (given up here)
        order: list[str] = []

        async def job(name: str) -> None:
            ticket = await pool.acquire(name=name)
            order.append(name)
            await asyncio.sleep(0)
            pool.release(ticket)

        waiting = [asyncio.ensure_future(job(name)) for name in ("c", "d", "e")]
        await asyncio.sleep(0)
        pool.resize(3, cap=3, auto=False)
        # A slot is free, but c is let in at the next turn: a newcomer does not pass it.
        assert _admitted_at_once(pool, name="late") is None
        for _ in range(2):  # the dispatch, then c's task
            await asyncio.sleep(0)
        assert order == ["c"]
        pool.release(at_once[0])
        await asyncio.gather(*waiting)
        pool.release(at_once[1])
        ordered = Pool(1)
        return at_once, order, _admitted_at_once(ordered, name="x")

    at_once, order, ordered = asyncio.run(scenario())
    assert at_once[0] is not None and at_once[1] is not None and at_once[2] is None
    assert order == ["c", "d", "e"]
    assert ordered is None


def test_a_resized_pool_lets_more_in_at_once_and_fewer_from_then_on() -> None:
    """`procctl pool N` while jobs wait: 1 → 3 admits two more at once; back
    to 1, the running ones go on and nothing new starts until they are under it."""

    async def scenario() -> list[int]:
        pool = Pool(1)
        seen: list[int] = []
        first = await pool.acquire(name="a")
        waiting = [asyncio.ensure_future(pool.acquire(name=name)) for name in "bcde"]
        await asyncio.sleep(0)
        seen.append(pool.running)
        pool.set_size(3)
        await asyncio.sleep(0)
        seen.append(pool.running)
        pool.set_size(1)
        pool.release(first)
        pool.release(await waiting[0])
        await asyncio.sleep(0)
        seen.append(pool.running)
        pool.release(await waiting[1])
        await asyncio.sleep(0)
        seen.append(pool.running)
        for task in waiting[2:]:
            pool.release(await task)
        return seen

    assert asyncio.run(scenario()) == [1, 3, 1, 1]


def test_admission_holds_a_job_that_does_not_fit_until_memory_frees() -> None:
    free = {"bytes": 500 * MiB}

    async def scenario() -> list[str]:
        pool = Pool(4, memory_probe=lambda: free["bytes"])
        log: list[str] = []
        small = await pool.acquire(rss_bytes=300 * MiB, name="small")
        log.append("small started")

        async def big() -> None:
            ticket = await pool.acquire(rss_bytes=400 * MiB, name="big")
            log.append("big started")
            pool.release(ticket)

        task = asyncio.ensure_future(big())
        await asyncio.sleep(0.05)
        assert pool.running == 1  # big is held: 500 - 300 reserved < 400
        log.append("small ends")
        pool.release(small)
        await asyncio.wait_for(task, 5)
        return log

    assert asyncio.run(scenario()) == ["small started", "small ends", "big started"]


def test_jobs_queued_together_see_each_others_reservation() -> None:
    # Eight 256 MiB jobs queued in the same turn with room for three: the
    # dispatch that admits them must count the ones it just let in (before
    # their tasks even resume), or all eight start at once.
    async def scenario() -> tuple[int, int]:
        pool = Pool(8, memory_probe=lambda: 800 * MiB)
        tasks = [asyncio.ensure_future(pool.acquire(rss_bytes=256 * MiB, name=f"j{i}")) for i in range(8)]
        await asyncio.sleep(0.05)
        admitted = sum(task.done() for task in tasks)
        running = pool.running
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return admitted, running

    assert asyncio.run(scenario()) == (3, 3)


def test_a_grown_job_is_not_counted_twice() -> None:
    # Available memory already lacks what a running job holds; its
    # reservation must shrink by as much, or the pool admits ever fewer.
    free = {"bytes": 1200 * MiB}

    async def scenario() -> tuple[bool, bool]:
        pool = Pool(4, memory_probe=lambda: free["bytes"])
        first = await pool.acquire(rss_bytes=500 * MiB, name="first")
        free["bytes"] = 700 * MiB  # the first job now holds its 500 MiB
        before = asyncio.ensure_future(pool.acquire(rss_bytes=600 * MiB, name="second"))
        await asyncio.sleep(0.05)
        held_before = not before.done()  # 700 − 500 still reserved < 600
        pool.grown(first, 500 * MiB)
        pool._dispatch()  # as the next release or tick would
        await asyncio.sleep(0.05)
        admitted_after = before.done()  # 700 − 0 ≥ 600
        pool.release(first)
        if before.done():
            pool.release(before.result())
        else:
            before.cancel()
        return held_before, admitted_after

    assert asyncio.run(scenario()) == (True, True)


def test_admission_rechecks_the_machine_on_its_ticker(monkeypatch: object) -> None:
    free = {"bytes": 100 * MiB}
    monkeypatch.setattr(pool_module, "AUTO_TICK_S", 0.02)  # type: ignore[attr-defined]

    async def scenario() -> bool:
        pool = Pool(4, memory_probe=lambda: free["bytes"])
        other = await pool.acquire(name="other")
        waiter = asyncio.ensure_future(pool.acquire(rss_bytes=200 * MiB, name="big"))
        await asyncio.sleep(0.1)
        held = not waiter.done()
        free["bytes"] = 1024 * MiB  # something outside procctl freed memory
        await asyncio.wait_for(waiter, 5)
        pool.release(other)
        pool.close()
        return held

    assert asyncio.run(scenario())


def test_a_job_bigger_than_the_machine_runs_alone() -> None:
    warnings: list[str] = []

    async def scenario() -> list[str]:
        pool = Pool(4, memory_probe=lambda: 100 * MiB, on_warning=lambda name, message: warnings.append(f"{name}: {message}"))
        log: list[str] = []
        first = await pool.acquire(name="a")
        huge = asyncio.ensure_future(pool.acquire(rss_bytes=10_000 * MiB, name="huge"))
        await asyncio.sleep(0.02)
        log.append(f"running {pool.running}, huge waiting {not huge.done()}")
        pool.release(first)
        ticket = await asyncio.wait_for(huge, 5)
        log.append(f"running {pool.running}")
        pool.release(ticket)
        pool.close()
        return log

    assert asyncio.run(scenario()) == ["running 1, huge waiting True", "running 1"]
    assert warnings and warnings[0].startswith("huge: predicted peak RSS 10000 MiB exceeds available memory")


def test_auto_grows_with_room_shrinks_under_pressure_and_never_passes_the_cap() -> None:
    sizes: list[int] = []
    pool = Pool(2, auto=True, cap=3, min_free_bytes=100 * MiB, memory_probe=lambda: 8192 * MiB, cpu_probe=lambda: 0.0,
                on_resize=lambda: sizes.append(pool.limit))

    async def scenario() -> list[int]:
        seen = []
        tickets = [await pool.acquire() for _ in range(2)]
        waiters = [asyncio.ensure_future(pool.acquire()) for _ in range(5)]
        await asyncio.sleep(0)
        for _ in range(6):
            pool._adapt(cpu_percent=10.0, available=8192 * MiB)
            pool._dispatch()
            await asyncio.sleep(0)
            seen.append(pool.running)
        pool._adapt(cpu_percent=99.0, available=8192 * MiB)
        seen.append(pool.limit)
        pool._adapt(cpu_percent=10.0, available=50 * MiB)
        seen.append(pool.limit)
        for w in waiters:
            w.cancel()
        for t in tickets:
            pool.release(t)
        pool.close()
        return seen

    seen = asyncio.run(scenario())
    assert max(seen[:6]) == 3  # grew from 2 to the cap of 3, never beyond
    assert seen[6] == 2 and seen[7] == 1
    # Every move of the effective size was announced (the live header, status, events).
    assert sizes == [3, 2, 1]


def test_supervisor_starts_longest_predicted_first(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "procfile.toml"
    path.write_text(
        f"""
[settings]
max_parallel = 1
schedule = "longest-first"
[process.job]
cmd = ["{sys.executable}", "{helper('marker.py')}", "{marks}", "{{item}}", "0"]
each = ["a", "b", "c", "d"]
"""
    )
    plan = build_plan(load_manifest(path))
    history = [PastRun("job", command_key(job), duration, None) for job, duration in zip(plan.jobs, (1.0, 4.0, 2.0, 3.0))]
    supervisor = Supervisor(plan, Bus(), StateDir.beside(path), predictions=predict(plan.jobs, history))
    result = asyncio.run(supervisor.run())
    assert result.exit_code == 0
    starts = {p.name: int(p.read_text().split()[0]) for p in marks.iterdir()}
    assert sorted(starts, key=starts.__getitem__) == ["b", "d", "c", "a"]

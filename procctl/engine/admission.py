"""Who may start now: the dependency gate and the pool.

An instance starts once every dependency holds (`depends_on`: started, ready
or succeeded) and, for a job, once the pool gives it a slot; a service takes
no slot and waits only while the queue is held (`pause --all`). Jobs leave
the queue in plan order, or the longest predicted first (`longest-first`),
and a job with a predicted peak RSS must fit in the memory left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from procctl import events
from procctl.bus import Bus
from procctl.config.plan import Job, Plan
from procctl.engine.pool import Pool
from procctl.engine.predict import Prediction
from procctl.states import State

if TYPE_CHECKING:
    from procctl.engine.feeder import Feeder
    from procctl.engine.runner import InstanceRunner


class Admission:
    def __init__(
        self,
        plan: Plan,
        bus: Bus,
        predictions: Mapping[str, Prediction],
        by_process: Mapping[str, Sequence[InstanceRunner]],
        feeders: Mapping[str, Feeder] | None = None,
    ) -> None:
        self._plan = plan
        self._bus = bus
        self._predictions = predictions
        self._by_process = by_process
        """Every instance of each process, as the supervisor keeps them."""
        self._feeders = feeders or {}
        """The big pools: those of their instances that run are in `by_process`,
        the rest wait in the feeder or are in its ledger."""
        self._changed: asyncio.Event | None = None
        self._gated = 0
        """How many wait at the gate now (`changed` wakes them, if any)."""
        self.pool: Pool | None = None

    def open(self) -> None:
        """The run begins (on the loop): the pool opens, its figures published."""
        plan = self._plan
        self._changed = asyncio.Event()
        self.pool = Pool(
            plan.max_parallel,
            auto=plan.auto,
            cap=plan.parallel_cap if plan.auto else plan.max_parallel,
            min_free_bytes=plan.min_free_bytes,
            on_warning=lambda name, message: self._bus.publish(events.Notice(name, name, message=message, level="warning")),
            on_resize=self._publish,
            ordered=plan.schedule == "longest-first",
        )
        self._publish()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def replan(self, plan: Plan) -> None:
        """A reload's plan: its schedule, and its pool size from now on
        (jobs running past a smaller size finish; none starts until below it)."""
        self._plan = plan
        if self.pool is not None:
            self.pool.ordered = plan.schedule == "longest-first"
        if self.pool is not None and (self.pool.cap, self.pool.auto) != (plan.pool_size, plan.auto):
            self.pool.resize(plan.max_parallel, cap=plan.pool_size, auto=plan.auto)
            self._publish()

    def _publish(self) -> None:
        pool = self.pool
        if pool is not None:
            self._bus.publish(
                events.PoolSample("pool", "pool", pool_size=pool.limit, pool_cap=pool.cap, auto=pool.auto, running=pool.running, queued=pool.waiting)
            )

    # ----------------------------------------------------------- the gate

    def changed(self) -> None:
        """Some instance's state changed: the gate looks again."""
        # Every state change of every instance comes here (three a job):
        # with nobody at the gate there is nobody to wake.
        if self._changed is not None and self._gated:
            self._changed.set()
            self._changed = asyncio.Event()

    async def dependencies(self, runner: InstanceRunner) -> str:
        """Wait until every dependency holds. Returns '' or why it never will."""
        return await self.dependencies_of(runner.job)

    async def dependencies_of(self, job: Job) -> str:
        while True:
            pending = False
            # Read afresh each time, from the plan in force: a reload may have changed them meanwhile.
            spec = self._plan.manifest.processes.get(job.process, job.spec)
            for dep, condition in spec.depends_on.items():
                verdict = self._verdict(dep, condition)
                if verdict is None:
                    pending = True
                elif verdict:
                    return verdict
            if not pending:
                return ""
            assert self._changed is not None
            self._gated += 1
            try:
                await self._changed.wait()
            finally:
                self._gated -= 1

    def _verdict(self, process: str, condition: str) -> str | None:
        """'' when it holds, None while undecided, else why it never will."""
        undecided = False
        feeder = self._feeders.get(process)
        if feeder is not None:
            verdict = feeder.verdict(condition)
            if verdict:
                return verdict
            undecided = verdict is None
        for dep in self._by_process.get(process, ()):
            if condition == "started":
                holds = dep.started_once
            elif condition == "ready":
                holds = dep.ready_once
            else:
                holds = dep.state is State.EXITED
            if holds:
                continue
            if dep.state.final:
                return f"dependency {dep.name} {dep.result().status_text}, not {condition}"
            undecided = True
        return None if undecided else ""

    # ----------------------------------------------------------- the pool

    async def slot(self, runner: InstanceRunner) -> int:
        """A job waits for a pool slot; a service only while the queue is held."""
        assert self.pool is not None
        if runner.admitted is not None:
            ticket, runner.admitted = runner.admitted, None
            return ticket  # A big pool's instance, made once it had its slot.
        if not runner.job.pooled:
            return await self.pool.enter()
        return await self.admit(runner.job)

    async def admit(self, job: Job) -> int:
        """A slot for `job`: its ticket."""
        assert self.pool is not None
        prediction = self._predictions.get(job.name)
        return await self.pool.acquire(priority=self._priority(job), rss_bytes=prediction.rss_bytes if prediction else None, name=job.name)

    def release(self, ticket: int) -> None:
        assert self.pool is not None
        self.pool.release(ticket)

    def _priority(self, job: Job) -> float:
        """Lower leaves the queue first: plan order (FIFO), or the longest
        predicted duration first when the schedule says so."""
        if self._plan.schedule == "longest-first":
            prediction = self._predictions.get(job.name)
            if prediction is not None and prediction.duration_s is not None:
                return -prediction.duration_s
        return 0.0

    def grown(self, ticket: int, rss_bytes: int) -> None:
        """A running job's tree holds `rss_bytes` now (memory-aware admission)."""
        if self.pool is not None:
            self.pool.grown(ticket, rss_bytes)

    def resize(self, size: int) -> None:
        """`procctl pool N`: N jobs at once from now on (the cap, under auto)."""
        assert self.pool is not None
        self.pool.set_size(size)

    def hold(self, held: bool) -> None:
        """`pause --all` holds the queue: no new start until it is released."""
        assert self.pool is not None
        self.pool.hold(held)

    @property
    def held(self) -> bool:
        return self.pool is not None and self.pool.held

"""A run's big pools: a `Feeder` (`engine/feeder.py`) for each `each` over
more than `plan.EAGER_JOBS` items, the tasks that feed them, and the
folding of each of their instances into its pool's ledger once it has
ended (then the supervisor forgets it).

`BigPools` is each feeder's `FeederHost`: it asks the supervisor's
admission for the gate and the slots, and the supervisor to make and begin
an admitted instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from procctl.config.plan import EAGER_JOBS
from procctl.engine.feeder import Feeder, Ledger

if TYPE_CHECKING:
    from procctl.config.plan import Job, Plan
    from procctl.engine.admission import Admission
    from procctl.engine.runner import InstanceRunner


class Pooling(Protocol):
    """What the big pools need of their supervisor (`Supervisor` is the one)."""

    admission: Admission

    @property
    def stopping(self) -> bool: ...

    def add(self, job: Job, *, admitted: int | None = None) -> InstanceRunner:
        """Make the job's runner (holding the slot `admitted`) and begin its life."""
        ...

    def drop(self, runner: InstanceRunner) -> None:
        """Forget an instance that has ended."""
        ...


class BigPools:
    def __init__(self, plan: Plan, supervisor: Pooling, logs: Path) -> None:
        self._sup = supervisor
        self.feeders: dict[str, Feeder] = {
            segment.spec.name: Feeder(segment, self, logs)
            for segment in plan.jobs.segments
            if segment.spec.each is not None and len(segment) > EAGER_JOBS
        }
        """The big pools, by process."""
        self._feeding: list[asyncio.Task[None]] = []

    def feed(self) -> list[asyncio.Task[None]]:
        """Begin admitting every pool's items; the tasks that do it."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(feeder.run()) for feeder in self.feeders.values()]
        self._feeding.extend(tasks)
        return tasks

    def stop_feeding(self) -> None:
        for task in self._feeding:
            task.cancel()  # The queues of the big pools: nothing more starts.

    @property
    def queued(self) -> int:
        """Instances of the big pools that wait to be made (not counted by the pool)."""
        return sum(feeder.queued for feeder in self.feeders.values())

    def fold(self, runner: InstanceRunner) -> None:
        """A big pool's instance has ended: into its ledger, out of memory."""
        feeder = self.feeders.get(runner.process)
        if feeder is not None:
            feeder.ledger.record(runner.job.index - 1, runner.state, runner.figures())
            self._sup.drop(runner)

    def ledgers(self, order: Sequence[str], running: Mapping[str, Sequence[InstanceRunner]]) -> list[Ledger]:
        """Every pool's ledger in `order`, with what still runs folded in
        (an error ended the run with it running)."""
        ledgers: list[Ledger] = []
        for process in order:
            feeder = self.feeders.get(process)
            if feeder is not None:
                for runner in list(running.get(process, ())):
                    self.fold(runner)
                ledgers.append(feeder.ledger)
        return ledgers

    # --------------------------------------------------- what feeders ask

    @property
    def stopping(self) -> bool:
        return self._sup.stopping

    async def dependencies_of(self, job: Job) -> str:
        return await self._sup.admission.dependencies_of(job)

    def admit(self, job: Job) -> Coroutine[Any, Any, int]:
        # The admission's own coroutine, not one awaiting it: one frame
        # fewer to resume each time a slot is given, once an item.
        return self._sup.admission.admit(job)

    def release(self, ticket: int) -> None:
        self._sup.admission.release(ticket)

    def start_admitted(self, job: Job, ticket: int) -> InstanceRunner:
        return self._sup.add(job, admitted=ticket)

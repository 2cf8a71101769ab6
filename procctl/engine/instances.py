"""The instances a run holds now: in plan order, by process and by name,
and the names a command line or a request gives resolved to them.

A big pool's instances join when the pool admits them and leave once they
have ended and are in its ledger (`engine/bigpools.py`).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING

from procctl.config.plan import lone_name
from procctl.config.select import resolve
from procctl.errors import UsageError

if TYPE_CHECKING:
    from procctl.config.plan import Plan
    from procctl.engine.runner import InstanceRunner


class Instances:
    def __init__(self) -> None:
        self._all: dict[InstanceRunner, None] = {}
        """In plan order (a dict: a big pool's come and go)."""
        self.by_process: dict[str, list[InstanceRunner]] = {}
        self.by_name: dict[str, InstanceRunner] = {}

    def __iter__(self) -> Iterator[InstanceRunner]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def join(self, runner: InstanceRunner) -> None:
        self._all[runner] = None
        self.by_process.setdefault(runner.process, []).append(runner)
        self.by_name[runner.name] = runner

    def drop(self, runner: InstanceRunner) -> None:
        self._all.pop(runner, None)
        self.by_name.pop(runner.name, None)
        mine = self.by_process.get(runner.process)
        if mine is not None and runner in mine:
            mine.remove(runner)

    def named(self, name: str) -> InstanceRunner | None:
        """The instance called `name`; for `web.1` when there is none, the
        lone instance `web` (it is replica 1: `plan.lone_name`)."""
        runner = self.by_name.get(name)
        if runner is not None:
            return runner
        lone = lone_name(name)
        runner = self.by_name.get(lone) if lone is not None else None
        return runner if runner is not None and runner.job.index == 0 and runner.job.item is None else None

    def rejoin(self, runner: InstanceRunner) -> None:
        """An instance it holds is wanted again (a scale up took its number
        back, a reload added back the process it removed): its name resolves
        as its process's again."""
        mine = self.by_process.setdefault(runner.process, [])
        if runner not in mine:
            mine.append(runner)

    def forget_process(self, process: str) -> None:
        """A process is gone from the manifest: its name no longer resolves."""
        self.by_process.pop(process, None)

    def live(self, process: str) -> list[InstanceRunner]:
        """The process's instances still wanted (not retired)."""
        return [runner for runner in self.by_process.get(process, ()) if not runner.retired]

    def log_position(self, instance: str) -> int | None:
        runner = self.by_name.get(instance)
        return runner.log_position if runner is not None else None

    def resolve(self, names: Iterable[str], plan: Plan, big_pools: Collection[str], *, everything: bool = False) -> list[InstanceRunner]:
        """Instances by process name (all of its instances) or instance name
        (`web.2`, `thumb[7]`), each once, in one pass. An unknown name is a
        UsageError listing the known processes."""
        if everything:
            return list(self._all)
        names = list(names)
        if not names:
            raise UsageError("name at least one process or instance (or use --all)")
        for name in names:
            job = plan.jobs.named(name) if name not in self.by_name else None
            if job is not None and job.process in big_pools:
                raise UsageError(f"{name} is not running: an instance of a big pool ({job.process}) can be reached while it runs")
        aliases = {name: runner for name in names if name not in self.by_name and (runner := self.named(name)) is not None}
        return resolve(names, self.by_process, ChainMap(self.by_name, aliases) if aliases else self.by_name)

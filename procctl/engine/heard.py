"""What the run's watchers report, turned into events and the runners'
verbs: the processes' notifications (`engine/ipc.py`: a status text, a
watchdog gone unfed), the enforcer's breaches and notices, and the
executor's notices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procctl import events
from procctl.bus import Bus

if TYPE_CHECKING:
    from procctl.engine.runner import InstanceRunner


class Heard:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def status_message(self, runner: InstanceRunner, text: str) -> None:
        self._bus.publish(events.StatusMessage(runner.process, runner.name, text=text))

    def hung(self, runner: InstanceRunner, why: str) -> None:
        runner.hung(why)

    def notice(self, runner: InstanceRunner | None, message: str, level: str) -> None:
        process, name = (runner.process, runner.name) if runner is not None else ("procctl", "procctl")
        self._bus.publish(events.Notice(process, name, message=message, level=level))

    def breach(self, runner: InstanceRunner, limit: str, value: float, maximum: float, mechanism: str, reason: str) -> None:
        runner.breach(limit, value, maximum, mechanism, reason)

    def limit_notice(self, runner: InstanceRunner, message: str) -> None:
        self.notice(runner, message, "warning")

    def executor_notice(self, message: str, level: str) -> None:
        self.notice(None, message, level)

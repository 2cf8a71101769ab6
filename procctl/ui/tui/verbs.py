"""The keys of the interactive view that act on instances: which instance a
key means (the open log's, else the table's selection), the question asked
first when the key would end a live process, and the control verb it then
sends through the face — the same request `procctl restart`, `procctl kill`,
`procctl pause`, `procctl scale` send. What it changes comes back as events,
as any other change does.
"""

from __future__ import annotations

from typing import Any

from textual.app import App

from procctl.errors import ProcctlError
from procctl.states import State
from procctl.ui.face import Supervision
from procctl.ui.live_model import LiveModel
from procctl.ui.tui.screens import Confirm, LogScreen, Prompt
from procctl.ui.tui.table import InstanceTable

_HAS_A_PROCESS = frozenset({State.STARTING, State.RUNNING, State.READY, State.PAUSED, State.STOPPING})
"""States in which a restart or a stop ends a live process (asked first)."""


class VerbKeys(App[int]):
    """The view's keys that send control verbs (`tui.app.LiveApp` binds them)."""

    face: Supervision
    model: LiveModel
    table: InstanceTable

    def target(self) -> tuple[str, str, State] | None:
        """(instance, process, state) the keys act on: the log's instance,
        else the table's selection."""
        screen = self.screen
        name = screen.instance if isinstance(screen, LogScreen) else None
        if name is None:
            row = self.table.selected
            if row is None:
                return None
            name = row.name
        row = self.model.rows.get(name)
        if row is None:
            return None
        return row.name, row.process, row.state

    async def send(self, verb: str, args: dict[str, Any]) -> Any:
        """One control verb through the face; an error is shown, not raised."""
        try:
            return await self.face.call(verb, args)
        except ProcctlError as exc:
            self.notify(str(exc), severity="error", timeout=6)
            return None

    # ------------------------------------------------------------ actions

    async def action_restart(self) -> None:
        target = self.target()
        if target is None:
            return
        name, _, state = target
        if state not in _HAS_A_PROCESS:
            # Nothing runs that a restart would end: it only starts one.
            await self.send("restart", {"names": [name]})
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.send("restart", {"names": [name]})

        self.push_screen(Confirm(f"Restart {name}? Its running process gets its stop signal and a new one starts."), answered)

    async def action_stop_start(self) -> None:
        target = self.target()
        if target is None:
            return
        name, _, state = target
        if state.final:
            await self.send("start", {"names": [name]})
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.send("kill", {"names": [name]})

        self.push_screen(Confirm(f"Stop {name}? It gets its stop signal, then SIGKILL after its stop_timeout, and is not restarted."), answered)

    async def action_pause(self) -> None:
        target = self.target()
        if target is not None:
            name, _, state = target
            await self.send("resume" if state is State.PAUSED else "pause", {"names": [name]})

    async def action_scale(self, step: int) -> None:
        target = self.target()
        if target is None:
            return
        _, process, _ = target
        current = sum(1 for row in self.model.rows.values() if row.process == process and not row.state.final)
        wanted = max(current + step, 0)
        if step > 0:
            await self.send("scale", {"process": process, "replicas": wanted})
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.send("scale", {"process": process, "replicas": wanted})

        self.push_screen(Confirm(f"Scale {process} down to {wanted}? One of its running instances is stopped."), answered)

    async def action_signal(self) -> None:
        target = self.target()
        if target is None:
            return
        name = target[0]

        async def answered(value: str | None) -> None:
            if value and value.strip():
                result = await self.send("kill", {"names": [name], "signal": value.strip()})
                if result is not None:
                    sent = ", ".join(result.get("signalled", [])) or "nothing (not running)"
                    self.notify(f"{result.get('signal', value)} to {sent}")

        self.push_screen(Prompt(f"signal to send to {name} (TERM, HUP, USR1, KILL, 9…; Enter: TERM, Esc: none)", "TERM"), answered)

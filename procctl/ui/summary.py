"""The summary of a run — its table, its closing lines and its --json twin —
and the colour of each state. Pure, and free of rich: the table is data
(`page.TableData`), written without rich where a page allows."""

from __future__ import annotations

from typing import Any

from procctl.engine.outcome import InstanceResult, RunResult, Unrun, summed
from procctl.states import State
from procctl.ui.page import Styled, TableData
from procctl.units import format_duration, format_size

STATE_STYLES = {
    State.PENDING: "dim",
    State.STARTING: "cyan",
    State.RUNNING: "green",
    State.READY: "bold green",
    State.STOPPING: "yellow",
    State.PAUSED: "magenta",
    State.BACKOFF: "yellow",
    State.EXITED: "green",
    State.FAILED: "bold red",
    State.KILLED: "red",
    State.TIMED_OUT: "red",
    State.LIMIT_EXCEEDED: "red",
    State.SKIPPED: "dim",
    State.STOPPED: "yellow",
}


def state_text(result: InstanceResult) -> Styled:
    return Styled(result.status_text, STATE_STYLES.get(result.state, ""))


SUMMARY_ROWS = 40
"""Past this many instances the summary folds each process into one row,
keeping only the instances that did not exit 0 on rows of their own."""
NOTABLE_ROWS = 10


def summary_table(result: RunResult) -> TableData:
    table = TableData(title="procctl summary")
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("exit", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("restarts", justify="right")
    table.add_column("peak rss", justify="right")
    table.add_column("cpu time", justify="right")
    table.add_column("cpu %", justify="right")
    table.add_column("note", overflow="fold")

    def add(inst: InstanceResult) -> None:
        table.add_row(
            inst.name,
            state_text(inst),
            inst.exit_text,
            format_duration(inst.duration_s),
            str(inst.restarts),
            *_figures(inst.peak_rss_bytes, inst.cpu_time_s, inst.mean_cpu_percent),
            inst.reason,
        )

    if len(result.instances) <= SUMMARY_ROWS:
        for inst in result.instances:
            add(inst)
        return table
    # One pass, nothing kept but the notable few: a million instances are summed, not listed.
    groups: dict[str, _Fold] = {}
    for inst in summed(result.instances):
        fold = groups.get(inst.process)
        if fold is None:
            fold = groups[inst.process] = _Fold()
        if isinstance(inst, Unrun):
            fold.add_unrun(inst)
        else:
            fold.add(inst)
    for process, fold in groups.items():
        if fold.count == 1 and fold.first is not None:
            add(fold.first)
            continue
        for inst in fold.notable:
            add(inst)
        hidden = fold.notable_count - len(fold.notable)
        note = f"{hidden} more that did not end well: see --json" if hidden > 0 else ""
        worst = State.FAILED if fold.notable_count else State.EXITED
        table.add_row(
            f"{process} ({fold.count} instances)",
            Styled(", ".join(f"{n} {status}" for status, n in fold.counts.items()), STATE_STYLES[worst]),
            "-",
            f"{format_duration(fold.duration_s)} total" if fold.timed else "-",
            str(fold.restarts),
            *_figures(fold.peak, fold.cpu_s if fold.cpu_timed else None, 100.0 * fold.cpu_s / fold.duration_s if fold.cpu_timed and fold.duration_s else None),
            note,
        )
    return table


class _Fold:
    """A process's instances summed up for the summary."""

    def __init__(self) -> None:
        self.count = 0
        self.first: InstanceResult | None = None
        self.notable: list[InstanceResult] = []
        self.notable_count = 0
        self.counts: dict[str, int] = {}
        self.duration_s = 0.0
        self.timed = False
        self.cpu_s = 0.0
        self.cpu_timed = False
        self.peak: int | None = None
        self.restarts = 0

    def add(self, inst: InstanceResult) -> None:
        self.count += 1
        if self.first is None:
            self.first = inst
        if not (inst.state is State.EXITED and inst.exit_code == 0) and inst.state is not State.SKIPPED:
            self.notable_count += 1
            if len(self.notable) < NOTABLE_ROWS:
                self.notable.append(inst)
        status = inst.status_text
        self.counts[status] = self.counts.get(status, 0) + 1
        if inst.duration_s is not None:
            self.duration_s += inst.duration_s
            self.timed = True
        if inst.cpu_time_s is not None:
            self.cpu_s += inst.cpu_time_s
            self.cpu_timed = True
        if inst.peak_rss_bytes is not None:
            self.peak = max(self.peak or 0, inst.peak_rss_bytes)
        self.restarts += inst.restarts

    def add_unrun(self, unrun: Unrun) -> None:
        """So many that never ran: no figures, never notable."""
        self.count += unrun.count
        status = InstanceResult(name="", process=unrun.process, state=State.SKIPPED, reason=unrun.reason).status_text
        self.counts[status] = self.counts.get(status, 0) + unrun.count


def _figures(peak_rss_bytes: int | None, cpu_time_s: float | None, mean_cpu_percent: float | None) -> tuple[str, str, str]:
    """Peak RSS, CPU time and mean CPU % as the summary shows them."""
    return (
        format_size(peak_rss_bytes),
        format_duration(cpu_time_s) if cpu_time_s is not None else "-",
        f"{mean_cpu_percent:.0f}%" if mean_cpu_percent is not None else "-",
    )


def summary_lines(result: RunResult) -> list[str]:
    """The closing lines under the table: the first failure and its log."""
    lines = []
    counts: dict[str, int] = {}
    warnings: list[str] = []
    unlogged = 0
    for inst in summed(result.instances):  # one pass: there may be a million
        if isinstance(inst, Unrun):
            counts[State.SKIPPED.text] = counts.get(State.SKIPPED.text, 0) + inst.count
            continue
        counts[inst.state.text] = counts.get(inst.state.text, 0) + 1
        if not (inst.log_lost_bytes or inst.log_error):
            continue
        unlogged += 1
        if unlogged <= NOTABLE_ROWS:
            warnings.append(
                f"warning: {inst.name}: its log {inst.log_path} is missing {format_size(inst.log_lost_bytes)} of output"
                f" ({inst.log_error or 'refused writes'}); it was shown, not logged"
            )
    tally = ", ".join(f"{n} {state}" for state, n in counts.items()) or "nothing to run"
    lines.append(f"{len(result.instances)} instances in {format_duration(result.duration_s)}: {tally}")
    if result.first_failure is not None:
        first = result.first_failure
        lines.append(f"first failure: {first.name} ({first.status_text}); log: {first.log_path}")
    lines.extend(warnings)
    if unlogged > NOTABLE_ROWS:
        lines.append(f"warning: {unlogged - NOTABLE_ROWS} more instances' logs are missing output: see --json")
    return lines


def instance_json(inst: InstanceResult) -> dict[str, Any]:
    return {
        "name": inst.name,
        "process": inst.process,
        "state": str(inst.state),
        "exit_code": inst.exit_code,
        "signal": inst.signal,
        "duration_s": inst.duration_s,
        "restarts": inst.restarts,
        "pid": inst.pid,
        "peak_rss_bytes": inst.peak_rss_bytes,
        "cpu_time_s": inst.cpu_time_s,
        "mean_cpu_percent": inst.mean_cpu_percent,
        "reason": inst.reason,
        "log": str(inst.log_path) if inst.log_path else None,
        "log_lost_bytes": inst.log_lost_bytes,
        "log_error": inst.log_error or None,
    }


def summary_json(result: RunResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "interrupted": result.interrupted,
        "duration_s": result.duration_s,
        "first_failure": result.first_failure.name if result.first_failure else None,
        "instances": [instance_json(inst) for inst in result.instances],
    }

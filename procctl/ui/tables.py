"""Tables (summary, plan) and their --json twins. Pure: data in, renderables
or plain dicts out."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from procctl.engine.state import InstanceResult, RunResult, State
from procctl.units import format_duration

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


def state_text(result: InstanceResult) -> Text:
    return Text(result.status_text, style=STATE_STYLES.get(result.state, ""))


def summary_table(result: RunResult) -> Table:
    table = Table(title="procctl summary", title_justify="left", expand=False)
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("exit", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("restarts", justify="right")
    table.add_column("note", overflow="fold")
    for inst in result.instances:
        table.add_row(
            inst.name,
            state_text(inst),
            inst.exit_text,
            format_duration(inst.duration_s),
            str(inst.restarts),
            inst.reason,
        )
    return table


def summary_lines(result: RunResult) -> list[str]:
    """The closing lines under the table: the first failure and its log."""
    lines = []
    counts: dict[str, int] = {}
    for inst in result.instances:
        counts[str(inst.state)] = counts.get(str(inst.state), 0) + 1
    tally = ", ".join(f"{n} {state}" for state, n in counts.items())
    lines.append(f"{len(result.instances)} instances in {format_duration(result.duration_s)}: {tally}")
    if result.first_failure is not None:
        first = result.first_failure
        lines.append(f"first failure: {first.name} ({first.status_text}); log: {first.log_path}")
    return lines


def instance_json(inst: InstanceResult) -> dict[str, Any]:
    return {
        "name": inst.name,
        "process": inst.process,
        "state": str(inst.state),
        "status": inst.status_text,
        "exit_code": inst.exit_code,
        "signal": inst.signal,
        "duration_s": inst.duration_s,
        "restarts": inst.restarts,
        "pid": inst.pid,
        "reason": inst.reason,
        "log": str(inst.log_path) if inst.log_path else None,
    }


def summary_json(result: RunResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "interrupted": result.interrupted,
        "duration_s": result.duration_s,
        "first_failure": result.first_failure.name if result.first_failure else None,
        "instances": [instance_json(inst) for inst in result.instances],
    }


def status_table(status: dict[str, Any]) -> Table:
    """The `status` reply of a running supervisor as a table."""
    from procctl.units import format_size

    held = " — queue held" if status.get("queue_held") else ""
    stopping = " — stopping" if status.get("stopping") else ""
    table = Table(title=f"{status['manifest']} (pid {status['pid']}, pool {status['max_parallel']}){held}{stopping}", title_justify="left")
    for column, justify in (("name", "left"), ("state", "left"), ("pid", "right"), ("uptime", "right"), ("restarts", "right"), ("exit", "right"), ("cpu time", "right"), ("rss", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in status["instances"]:
        state = State(row["state"])
        exit_text = "-" if row["exit_code"] is None else str(row["exit_code"])
        if row["exit_code"] is None and row["signal"]:
            exit_text = str(128 + row["signal"])
        table.add_row(
            row["name"],
            Text(row["status"] if state.final else row["state"], style=STATE_STYLES.get(state, "")),
            str(row["pid"] or "-"),
            format_duration(row["uptime_s"]),
            str(row["restarts"]),
            exit_text,
            format_duration(row["cpu_time_s"]) if row["cpu_time_s"] is not None else "-",
            format_size(row["rss_bytes"]),
        )
    return table


def limits_table(reply: dict[str, Any]) -> Table:
    """The `limits` reply: per instance, each limit, its mechanism, and usage."""
    from procctl.units import format_size

    table = Table(title="limits", title_justify="left")
    for column in ("instance", "limit", "value", "mechanism", "usage"):
        table.add_column(column, overflow="fold")
    for row in reply["instances"]:
        usage = row["usage"]
        used = {
            "memory": format_size(usage["rss_bytes"]) if usage else "-",
            "cpu_time": format_duration(usage["cpu_time_s"]) if usage else "-",
            "nofile": f"{usage['open_files']} open" if usage else "-",
            "nproc": f"{usage['processes']} processes" if usage else "-",
        }
        if not row["limits"]:
            table.add_row(row["name"], "-", "-", "no limits", used["memory"])
        for key, info in row["limits"].items():
            value = info["value"]
            if key == "memory":
                shown = format_size(value)
            elif isinstance(value, list):
                shown = str(value[0]) if value[0] == value[1] else f"{value[0]} (hard {value[1]})"
            else:
                shown = f"{value:g}%" if key == "cpu_percent" else str(value)
            table.add_row(row["name"], key, shown, info["mechanism"], used.get(key, "-"))
    return table

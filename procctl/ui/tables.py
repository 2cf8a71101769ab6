"""Tables of status, shared regions, history and limits, as rich draws them.
Pure: data in, renderables out. (The summary is `summary.py`, the plan
`plan.py`.)"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from procctl.states import State, exit_text, signal_name, status_text
from procctl.ui.summary import STATE_STYLES
from procctl.units import format_duration, format_size

if TYPE_CHECKING:
    from procctl.engine.history import RunRow

def status_table(status: dict[str, Any]) -> Table:
    """The `status` reply of a running supervisor as a table."""
    from procctl.units import format_size

    held = " — queue held" if status.get("queue_held") else ""
    stopping = " — stopping" if status.get("stopping") else ""
    if status.get("halted"):
        stopping = f" — everything stopped after {status['halted']}: 'procctl down' ends it"
    pool = status.get("pool") or {"size": status["max_parallel"], "cap": status["max_parallel"], "auto": False}
    pool_text = f"pool {pool['size']}" + (f" (auto, up to {pool['cap']})" if pool["auto"] else "")
    table = Table(title=f"{status['manifest']} (pid {status['pid']}, {pool_text}){held}{stopping}", title_justify="left")
    for column, justify in (("name", "left"), ("state", "left"), ("pid", "right"), ("uptime", "right"), ("restarts", "right"), ("exit", "right"), ("cpu", "right"), ("cpu time", "right"), ("rss", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    reported = any(row.get("status_message") for row in status["instances"])
    if reported:
        table.add_column("status message", overflow="fold")
    for row in status["instances"]:
        state = State(row["state"])
        rss = format_size(row["rss_bytes"])
        if row.get("memory_basis") == "pss" and row["rss_bytes"] is not None:
            rss += " pss"
        cells = [
            row["name"],
            Text(status_text(state, row["exit_code"], row["signal"]), style=STATE_STYLES.get(state, "")),
            str(row["pid"] or "-"),
            format_duration(row["uptime_s"]),
            str(row["restarts"]),
            exit_text(row["exit_code"], row["signal"]),
            f"{row['cpu_percent']:.0f}%" if row.get("cpu_percent") is not None else "-",
            format_duration(row["cpu_time_s"]) if row["cpu_time_s"] is not None else "-",
            rss,
        ]
        if reported:
            cells.append(Text(row.get("status_message") or ""))
        table.add_row(*cells)
    regions = status.get("shared") or []
    if regions:
        table.caption = "shared memory, counted once: " + ", ".join(
            f"{region['name']} {format_size(region['resident_bytes'])} of {format_size(region['size_bytes'])}" for region in regions
        )
        table.caption_justify = "left"
    return table


def regions_table(regions: list[dict[str, Any]]) -> Table:
    """`shm ls`: each shared region, its size, what it holds, who uses it."""
    table = Table(title="shared memory regions", title_justify="left")
    for column, justify in (("name", "left"), ("size", "right"), ("resident", "right"), ("used by", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "used by", overflow="fold")  # type: ignore[arg-type]
    for region in regions:
        users = []
        for user in region["users"]:
            how = user["mode"] + (", mapped" if user["mapped"] else "") + ("" if user["pid"] else ", not running")
            users.append(f"{user['instance']} ({how})")
        table.add_row(region["name"], format_size(region["size_bytes"]), format_size(region["resident_bytes"]), ", ".join(users) or "-")
    return table


def history_table(rows: Sequence[RunRow]) -> Table:
    """Recorded runs, newest first."""
    table = Table(title="history (newest first)", title_justify="left")
    for column, justify in (("started", "left"), ("instance", "left"), ("status", "left"), ("exit", "right"), ("duration", "right"), ("peak rss", "right"), ("cpu time", "right"), ("restarts", "right"), ("command", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "command", overflow="fold" if column == "command" else "ellipsis")  # type: ignore[arg-type]
    for row in rows:
        exit_text = str(row.exit_code) if row.exit_code is not None else (signal_name(row.signal) if row.signal else "-")
        state = State(row.status) if row.status in State._value2member_map_ else None
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.started_at)),
            row.instance,
            Text(state.text if state else row.status, style=STATE_STYLES.get(state, "") if state else ""),
            exit_text,
            format_duration(row.duration_s),
            format_size(row.peak_rss_bytes),
            format_duration(row.cpu_time_s) if row.cpu_time_s is not None else "-",
            str(row.restarts),
            row.command,
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

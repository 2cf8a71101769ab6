"""`procctl check`: the plan as a table and as JSON. Pure."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from procctl.config.plan import EAGER_JOBS
from procctl.ui.page import TableData
from procctl.units import format_duration

if TYPE_CHECKING:
    from collections.abc import Mapping

    from procctl.config.plan import Plan
    from procctl.engine.predict import Prediction


def _command_text(cmd: str | tuple[str, ...]) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def _ready_text(plan: Plan, process: str) -> str:
    ready = plan.manifest.processes[process].ready
    return f"{ready.kind} {ready.target}" if ready else "-"


PLAN_ROWS = 200
"""Processes shown in the plan table; a manifest of ten thousand is summed up
(drawing ten thousand rows takes seconds and is read by nobody)."""


def plan_table(plan: Plan) -> TableData:
    table = TableData(title=f"plan: {pool_text(plan)}")
    table.add_column("level", justify="right")
    table.add_column("process", no_wrap=True)
    table.add_column("instances", justify="right")
    table.add_column("pool")
    table.add_column("command", overflow="fold")
    table.add_column("depends on")
    table.add_column("ready")
    table.add_column("restart")
    table.add_column("timeout", justify="right")
    for process in plan.order[:PLAN_ROWS]:
        spec = plan.manifest.processes[process]
        deps = ", ".join(f"{name} ({cond})" for name, cond in spec.depends_on.items()) or "-"
        restart = spec.restart if spec.restart == "no" else f"{spec.restart} (max {spec.max_restarts})"
        table.add_row(
            str(plan.levels[process]),
            process,
            str(len(plan.jobs_of(process))),
            "job" if spec.pool else "-",
            _command_text(spec.cmd),
            deps,
            _ready_text(plan, process),
            restart,
            format_duration(spec.timeout_s) if spec.timeout_s else "-",
        )
    hidden = len(plan.order) - PLAN_ROWS
    if hidden > 0:
        table.add_row("", f"… {hidden:,} more processes (check --json lists them all)", "", "", "", "", "", "", "")
    return table


def pool_text(plan: Plan) -> str:
    """`pool of 4 (bounds 12 of 15 instances)`: what the pool holds back."""
    size = f"pool auto (up to {plan.parallel_cap})" if plan.auto else f"pool of {plan.max_parallel}"
    pooled = plan.pooled_count()
    return f"{size} (bounds {pooled} of {len(plan.jobs)} instances; services start at once)"


def predictions_table(plan: Plan, predictions: Mapping[str, Prediction], max_rows: int = 40) -> TableData:
    """Predicted duration and peak RSS per instance, from the run history."""
    from procctl.units import format_size

    table = TableData(title="predictions from the run history")
    for column, justify in (("instance", "left"), ("duration", "right"), ("peak RSS", "right"), ("from", "left")):
        table.add_column(column, justify=justify)
    # Listed predictions are those of processes small enough to list (see
    # predict.Predictions): no need to walk a big pool's instances for them.
    ordered = [job for segment in plan.jobs.segments if len(segment) <= EAGER_JOBS for job in segment if job.name in predictions]
    if plan.schedule == "longest-first":
        ordered.sort(key=lambda job: -(predictions[job.name].duration_s or 0.0))
    for job in ordered[:max_rows]:
        p = predictions[job.name]
        table.add_row(job.name, format_duration(p.duration_s), format_size(p.rss_bytes), p.source)
    if len(ordered) > max_rows:
        table.add_row(f"… {len(ordered) - max_rows} more", "", "", "")
    return table


def plan_json(plan: Plan, predictions: Mapping[str, Prediction] | None = None) -> dict[str, Any]:
    import signal

    settings = plan.manifest.settings
    processes = []
    for process in plan.order:
        spec = plan.manifest.processes[process]
        processes.append(
            {
                "name": process,
                "level": plan.levels[process],
                "command": spec.cmd if isinstance(spec.cmd, str) else list(spec.cmd),
                "depends_on": dict(spec.depends_on),
                "ready": {"kind": spec.ready.kind, "target": spec.ready.target, "timeout_s": spec.ready.timeout_s}
                if spec.ready
                else None,
                "liveness": spec.liveness._asdict() if spec.liveness else None,
                "restart": spec.restart,
                "max_restarts": spec.max_restarts,
                "timeout_s": spec.timeout_s,
                "stop_signal": signal.Signals(spec.stop_signal).name,
                "pooled": spec.pool,
                "instance_count": len(plan.jobs_of(process)),
                # A big pool's names are NAME[1] … NAME[N]: listing a million of them says nothing.
                "instances": [job.name for job in plan.jobs_of(process)] if len(plan.jobs_of(process)) <= EAGER_JOBS else None,
            }
        )
    return {
        "manifest": str(plan.manifest.path),
        "max_parallel": plan.max_parallel,
        "auto": plan.auto,
        "parallel_cap": plan.parallel_cap if plan.auto else plan.max_parallel,
        "schedule": plan.schedule,
        "min_free_bytes": plan.min_free_bytes,
        "predictions": {
            name: {"duration_s": p.duration_s, "peak_rss_bytes": p.rss_bytes, "source": p.source}
            for name, p in (predictions or {}).items()
        },
        "stop_timeout_s": settings.stop_timeout_s,
        "fail_fast": settings.fail_fast,
        "order": list(plan.order),
        "pooled_instances": _pooled_names(plan),
        "warnings": [warning] if (warning := plan.starvation()) else [],
        "processes": processes,
    }


def _pooled_names(plan: Plan) -> list[str]:
    """The pooled instances by name; a big pool as one `NAME[1]…NAME[N]`."""
    names: list[str] = []
    for segment in plan.jobs.segments:
        if not segment.spec.pool or not len(segment):
            continue
        if len(segment) <= EAGER_JOBS:
            names.extend(job.name for job in segment)
        else:
            names.append(f"{segment.spec.name}[1]…{segment.longest_name}")
    return names

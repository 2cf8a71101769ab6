"""What a run will do: the processes picked from the manifest, the plan and
its predictions, and `procctl check`, which prints them. Needs no Typer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from procctl.cli.common import load_manifest_option, warn
from procctl.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from procctl.config.manifest import Manifest
    from procctl.config.plan import Plan
    from procctl.engine.predict import Prediction
    from procctl.engine.store import StateDir


class NothingToRerun(Exception):
    """`--rerun-failed` found the last runs without a failed item: said on
    stderr, and the run ends at once with exit 0."""


def check(file: Path | None = None, parallel: str | None = None, schedule: str | None = None, as_json: bool = False) -> None:
    """Validate the manifest and print the plan: order, pool, instances, predictions."""
    from procctl.config.plan import build_plan
    from procctl.engine.store import StateDir

    plan = build_plan(load_manifest_option(file), **plan_options(parallel, schedule))
    state_dir = StateDir.beside(plan.manifest.path)
    predictions = load_predictions(plan, state_dir, warn, always=True)
    if as_json:
        from procctl.jsonout import dumps
        from procctl.ui.plan import plan_json

        sys.stdout.write(dumps(plan_json(plan, predictions)))
        return
    from procctl.cli.common import print_page
    from procctl.ui.plan import plan_table, pool_text, predictions_table

    warn_of_starvation(plan)
    tables = [plan_table(plan), *([predictions_table(plan, predictions)] if predictions else [])]
    valid = f"{plan.manifest.path}: valid; {len(plan.order)} processes, {len(plan.jobs)} instances, {pool_text(plan)}, schedule {plan.schedule}"
    print_page(tables, [valid])


def selected_manifest(
    manifest: Manifest,
    names: list[str] | None,
    only: list[str] | None,
    exclude: list[str] | None,
    no_deps: bool,
    can_die: list[str] | None,
    any_can_die: bool,
) -> Manifest:
    """The processes `run` (and `up`) were asked to run."""
    from procctl.config.select import allow_to_die, select_processes

    manifest = select_processes(manifest, [*(names or []), *_name_list(only)], exclude=_name_list(exclude), with_dependencies=not no_deps)
    return allow_to_die(manifest, _name_list(can_die), everything=any_can_die)


def failed_items(manifest: Manifest, state_dir: StateDir) -> dict[str, set[str]]:
    """`--rerun-failed`: for each `each` process of the run, the items that
    failed in its last recorded run. Raises UsageError when there is nothing
    to take them from; NothingToRerun (said on stderr) when nothing failed."""
    from procctl.engine.history import HistoryError, last_failed_items
    from procctl.errors import StateDirError

    pools = [name for name, spec in manifest.processes.items() if spec.each is not None]
    if not pools:
        raise UsageError("--rerun-failed: no `each` process in this run")
    found: dict[str, set[str]] = {}
    try:
        for name in pools:
            last = last_failed_items(state_dir.database, manifest.path, name)
            if last is not None:
                found[name] = set(last)
    except (HistoryError, StateDirError) as exc:
        raise UsageError(f"--rerun-failed: cannot read the run history: {exc}") from None
    if not found:
        raise UsageError(f"--rerun-failed: no recorded run of {', '.join(pools)} to take failed items from")
    if not any(found.values()):
        sys.stderr.write(f"procctl: nothing to rerun: no item failed in the last run of {', '.join(found)}\n")
        raise NothingToRerun
    for name in pools:
        found.setdefault(name, set())
    return found


def warn_of_starvation(plan: Plan) -> None:
    """One line on stderr when some pooled instance could wait for ever."""
    warning = plan.starvation()
    if warning:
        warn(warning)


def plan_options(parallel: str | None, schedule: str | None) -> dict[str, object]:
    """-j N | -j auto and --schedule as build_plan's keywords."""
    options: dict[str, object] = {}
    if parallel is not None:
        if parallel.strip().lower() == "auto":
            options["auto"] = True
        elif parallel.strip().isdigit() and int(parallel) >= 1:
            options["parallel"] = int(parallel)
        else:
            raise UsageError(f"--parallel: expected a number of at least 1 or 'auto', got {parallel!r}")
    if schedule is not None:
        if schedule not in ("fifo", "longest-first"):
            raise UsageError(f"--schedule: expected fifo or longest-first, got {schedule!r}")
        options["schedule"] = schedule
    return options


def load_predictions(plan: Plan, state_dir: StateDir, warn: Callable[[str], None], *, always: bool = False) -> Mapping[str, Prediction]:
    """Predictions from the run history, when the schedule or the adaptive
    pool uses them (or `always`, for check). An unreadable history is a
    warning, not an error."""
    from procctl.engine.history import HistoryError
    from procctl.engine.predict import past_runs, predict
    from procctl.errors import StateDirError

    if not always and plan.schedule != "longest-first" and not plan.auto:
        return {}
    try:
        runs = past_runs(state_dir.database, plan.manifest.path)
    except (HistoryError, StateDirError) as exc:
        warn(f"no predictions: {exc}")
        return {}
    return predict(plan.jobs, runs)


def _name_list(values: list[str] | None) -> list[str]:
    """`--only a,b --only c` → [a, b, c]."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]

"""`procctl run` and `procctl check`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, color_wanted, load_manifest_option, make_console, parse_duration_option
from procctl.errors import UsageError


@app.command()
def run(
    names: Annotated[Optional[list[str]], typer.Argument(help="Run only these processes (and what they depend on).", show_default=False)] = None,
    file: FileOption = None,
    parallel: Annotated[
        Optional[int], typer.Option("--parallel", "-j", help="Pool size: processes running at once (overrides max_parallel).", show_default=False)
    ] = None,
    plain: Annotated[bool, typer.Option("--plain", help="Prefixed lines even on a terminal.")] = False,
    timeout: Annotated[
        Optional[str], typer.Option("--timeout", help="Stop everything after this long (e.g. 10m) and exit 124.", show_default=False)
    ] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="A failure does not stop the rest (overrides fail_fast).")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON instead of a table.")] = False,
) -> None:
    """Run the manifest's processes in the foreground until they end or Ctrl-C."""
    from procctl.config.plan import build_plan
    from procctl.config.select import select_processes
    from procctl.control.address import socket_path
    from procctl.control.server import ControlServer, serving
    from procctl.engine.operations import Operations
    from procctl.engine.loop import run_supervisor
    from procctl.engine.store import StateDir
    from procctl.engine.supervisor import Supervisor
    from procctl.events import Bus
    from procctl.ui.plain import PlainPrinter

    if parallel is not None and parallel < 1:
        raise UsageError("--parallel: must be at least 1")
    run_timeout = parse_duration_option("--timeout", timeout)
    manifest = select_processes(load_manifest_option(file), names or [])
    plan = build_plan(manifest, parallel=parallel)
    bus = Bus()
    printer = PlainPrinter(
        sys.stdout.buffer,
        color=color_wanted(),
        names=[job.name for job in plan.jobs],
        processes=plan.order,
    )
    bus.subscribe(printer)
    state_dir = StateDir.beside(manifest.path)
    supervisor = Supervisor(
        plan,
        bus,
        state_dir,
        fail_fast=False if keep_going else None,
        run_timeout_s=run_timeout,
    )
    server = ControlServer(Operations(supervisor), socket_path(state_dir), manifest.path)
    result = run_supervisor(supervisor, services=[lambda: serving(server)])
    _print_summary(result, json_summary)
    raise typer.Exit(result.exit_code)


def _print_summary(result: object, as_json: bool) -> None:
    from procctl.ui.tables import summary_json, summary_lines, summary_table

    if as_json:
        sys.stdout.write(json.dumps(summary_json(result), indent=2) + "\n")  # type: ignore[arg-type]
        return
    console = make_console()
    try:
        console.print(summary_table(result))  # type: ignore[arg-type]
        for line in summary_lines(result):  # type: ignore[arg-type]
            console.print(line, highlight=False, markup=False)
    except BrokenPipeError:
        pass


@app.command()
def check(
    file: FileOption = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", "-j", help="Pool size to plan with.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Validate the manifest and print the plan: order, pool, instances."""
    from procctl.config.plan import build_plan
    from procctl.ui.plan import plan_json, plan_table

    if parallel is not None and parallel < 1:
        raise UsageError("--parallel: must be at least 1")
    plan = build_plan(load_manifest_option(file), parallel=parallel)
    if as_json:
        sys.stdout.write(json.dumps(plan_json(plan), indent=2) + "\n")
        return
    console = make_console()
    console.print(plan_table(plan))
    console.print(
        f"{plan.manifest.path}: valid; {len(plan.order)} processes, {len(plan.jobs)} instances, pool of {plan.max_parallel}",
        highlight=False,
        markup=False,
    )



"""`procctl run` and `procctl check` as commands of the app: their options
and help. What they do is `running.run` and `planning.check`, which the
quick forms (`procctl.cli.quick`) call too."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, complete_name, complete_name_list
from procctl.cli.quick import JSON, KEEP_GOING, NO_WATCH, PARALLEL, PLAIN, SCHEDULE, TIMEOUT


NamesArg = Annotated[
    Optional[list[str]],
    typer.Argument(metavar="[NAME]...", help="Run only these processes (and what they depend on).", show_default=False, autocompletion=complete_name),
]
ParallelOption = Annotated[
    Optional[str],
    typer.Option(*PARALLEL, metavar="N|auto", help="Pool size: N processes at once, or 'auto' (adapts to load; with -j N too, N is the cap).", show_default=False),
]
ScheduleOption = Annotated[
    Optional[str], typer.Option(*SCHEDULE, metavar="ORDER", help="Queue order: fifo, or longest-first (by durations in the run history).", show_default=False)
]
TimeoutOption = Annotated[
    Optional[str], typer.Option(*TIMEOUT, metavar="DURATION", help="Stop everything after this long (e.g. 10m) and exit 124.", show_default=False)
]
KeepGoingOption = Annotated[bool, typer.Option(*KEEP_GOING, help="A failure does not stop the rest (overrides fail_fast).")]
OnlyOption = Annotated[
    Optional[list[str]],
    typer.Option("--only", metavar="NAMES", help="Run only these processes (comma-separated, repeatable) and what they depend on.", show_default=False, autocompletion=complete_name_list),
]
ExceptOption = Annotated[
    Optional[list[str]],
    typer.Option("--except", metavar="NAMES", help="Leave these processes out (comma-separated, repeatable), even when others depend on them.", show_default=False, autocompletion=complete_name_list),
]
NoDepsOption = Annotated[bool, typer.Option("--no-deps", help="Do not bring in the dependencies of the picked processes.")]
CanDieOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--can-die",
        metavar="NAMES",
        help="These processes (comma-separated, repeatable) may end without stopping the rest (exit_on_end off; a Procfile's default is on).",
        show_default=False,
        autocompletion=complete_name_list,
    ),
]
AnyCanDieOption = Annotated[bool, typer.Option("--any-can-die", help="No process that ends stops the rest (exit_on_end off for all).")]
NoWatchOption = Annotated[bool, typer.Option(*NO_WATCH, help="Ignore every process's `watch`: no restart when files change.")]


@app.command()
def run(
    names: NamesArg = None,
    file: FileOption = None,
    parallel: ParallelOption = None,
    schedule: ScheduleOption = None,
    plain_output: Annotated[bool, typer.Option(*PLAIN, help="Prefixed lines even on a terminal.")] = False,
    tail: Annotated[
        Optional[int], typer.Option("--tail", metavar="N", help="Lines of merged output under the live table (default: what fits).", min=0, show_default=False)
    ] = None,
    timeout: TimeoutOption = None,
    keep_going: KeepGoingOption = False,
    only: OnlyOption = None,
    exclude: ExceptOption = None,
    no_deps: NoDepsOption = False,
    can_die: CanDieOption = None,
    any_can_die: AnyCanDieOption = False,
    output: Annotated[
        str, typer.Option("--output", metavar="MODE", help="interleaved: prefixed lines as they come; grouped: each run's output as one block when it ends.")
    ] = "interleaved",
    events_to: Annotated[
        Optional[str], typer.Option("--events", metavar="FILE", help="Write every event as JSON lines to FILE ('-': stdout, and the human output goes to stderr).", show_default=False)
    ] = None,
    junit: Annotated[Optional[str], typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report to FILE when the run ends ('-': stdout, and the human output goes to stderr).", show_default=False)] = None,
    json_summary: Annotated[bool, typer.Option(*JSON, help="Print the final summary as JSON on stdout instead of a table (the human output goes to stderr).")] = False,
    no_watch: NoWatchOption = False,
    executor: Annotated[
        Optional[str],
        typer.Option(
            "--executor",
            help="Where `each` jobs run: local, dask (the cluster of [settings] dask), or dask://HOST:PORT (that cluster's scheduler).",
            show_default=False,
        ),
    ] = None,
    rerun_failed: Annotated[
        bool, typer.Option("--rerun-failed", help="Run only the `each` items that failed in the last recorded run of their process.")
    ] = False,
) -> None:
    """Run the manifest's processes in the foreground until they end or Ctrl-C."""
    from procctl.cli.running import run as run_manifest

    code = run_manifest(
        names=names, file=file, parallel=parallel, schedule=schedule, plain_output=plain_output, tail=tail, timeout=timeout, keep_going=keep_going,
        only=only, exclude=exclude, no_deps=no_deps, can_die=can_die, any_can_die=any_can_die, output=output, events_to=events_to, junit=junit,
        json_summary=json_summary, no_watch=no_watch, executor=executor, rerun_failed=rerun_failed,
    )
    raise typer.Exit(code)


@app.command()
def check(
    file: FileOption = None,
    parallel: Annotated[Optional[str], typer.Option(*PARALLEL, help="Pool size to plan with (N or auto).", show_default=False)] = None,
    schedule: Annotated[Optional[str], typer.Option(*SCHEDULE, help="Queue order to plan with: fifo or longest-first.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(*JSON, help="Print the plan as JSON.")] = False,
) -> None:
    """Validate the manifest and print the plan: order, pool, instances, predictions."""
    from procctl.cli.planning import check as check_manifest

    check_manifest(file=file, parallel=parallel, schedule=schedule, as_json=as_json)

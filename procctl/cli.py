"""The command line: parse, build objects, choose the UI, run, exit.

The only place that calls sys.exit or turns a ProcctlError into one line on
stderr and its exit code. Heavy modules are imported inside the commands that
need them, so that quick commands start quickly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from procctl.errors import ProcctlError, UsageError

if TYPE_CHECKING:
    from procctl.config.manifest import Manifest

app = typer.Typer(
    name="procctl",
    help="Run a manifest of processes under a bounded pool; watch and control them.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FileOption = Annotated[
    Optional[Path],
    typer.Option(
        "--file",
        "-f",
        help="The manifest (procfile.toml or Procfile). Default: $PROCCTL_FILE, else ./procfile.toml, else ./Procfile.",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        from procctl import __version__

        typer.echo(f"procctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run a manifest of processes under a bounded pool; watch and control them."""


def _load(file: Path | None) -> Manifest:
    from procctl.config.manifest import find_manifest, load_manifest

    return load_manifest(find_manifest(file))


def _parse_duration_option(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    from procctl.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option}: must be more than zero")
    return seconds


def _color_wanted() -> bool:
    from rich.console import Console

    return Console().color_system is not None


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
    from procctl.engine.loop import run_supervisor
    from procctl.engine.store import StateDir
    from procctl.engine.supervisor import Supervisor
    from procctl.events import Bus
    from procctl.ui.plain import PlainPrinter

    if parallel is not None and parallel < 1:
        raise UsageError("--parallel: must be at least 1")
    run_timeout = _parse_duration_option("--timeout", timeout)
    manifest = select_processes(_load(file), names or [])
    plan = build_plan(manifest, parallel=parallel)
    bus = Bus()
    printer = PlainPrinter(
        sys.stdout.buffer,
        color=_color_wanted(),
        names=[job.name for job in plan.jobs],
        processes=plan.order,
    )
    bus.subscribe(printer)
    supervisor = Supervisor(
        plan,
        bus,
        StateDir.beside(manifest.path),
        fail_fast=False if keep_going else None,
        run_timeout_s=run_timeout,
    )
    result = run_supervisor(supervisor)
    _print_summary(result, json_summary)
    raise typer.Exit(result.exit_code)


def _print_summary(result: object, as_json: bool) -> None:
    from procctl.ui.tables import summary_json, summary_lines, summary_table

    if as_json:
        sys.stdout.write(json.dumps(summary_json(result), indent=2) + "\n")  # type: ignore[arg-type]
        return
    from rich.console import Console

    console = Console(soft_wrap=False)
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
    plan = build_plan(_load(file), parallel=parallel)
    if as_json:
        sys.stdout.write(json.dumps(plan_json(plan), indent=2) + "\n")
        return
    from rich.console import Console

    console = Console()
    console.print(plan_table(plan))
    console.print(
        f"{plan.manifest.path}: valid; {len(plan.order)} processes, {len(plan.jobs)} instances, pool of {plan.max_parallel}",
        highlight=False,
        markup=False,
    )


@app.command()
def init(
    file: Annotated[Path, typer.Option("--file", "-f", help="Where to write the manifest.")] = Path("procfile.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter procfile.toml."""
    from procctl.config.writer import starter_manifest

    _write_new(file, starter_manifest(), force)
    typer.echo(f"wrote {file}; run it with: procctl run -f {file}")


@app.command("import")
def import_procfile(
    procfile: Annotated[Path, typer.Argument(help="The Procfile to convert.")] = Path("Procfile"),
    env_file: Annotated[
        Optional[Path], typer.Option("--env", help="The .env file to fold into [env]. Default: .env beside the Procfile, if any.", show_default=False)
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the manifest.")] = Path("procfile.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Convert a Procfile (and its .env) into procfile.toml."""
    from procctl.config.writer import manifest_from_procfile

    if not procfile.is_file():
        raise UsageError(f"no such Procfile: {procfile}")
    if env_file is None:
        beside = procfile.parent / ".env"
        env_file = beside if beside.is_file() else None
    elif not env_file.is_file():
        raise UsageError(f"--env: no such file: {env_file}")
    _write_new(output, manifest_from_procfile(procfile, env_file), force)
    typer.echo(f"wrote {output} from {procfile}" + (f" and {env_file}" if env_file else ""))


def _write_new(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    try:
        path.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def main() -> NoReturn:
    """Entry point: run the app; a ProcctlError becomes one line and its exit code."""
    try:
        app()
    except ProcctlError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        # Our stdout was closed early (`procctl ... | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(0)


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"procctl: {message}\n")
    sys.stderr.flush()
    sys.exit(code)

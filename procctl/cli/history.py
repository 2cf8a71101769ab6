"""`procctl history`: the runs recorded in `.procctl/state.db`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, complete_name, load_manifest_option, make_console
from procctl.jsonout import dumps


def state_database(file: Path | None) -> Path:
    """The database beside the manifest; without one (and without -f), the
    `.procctl/` of the current directory, where ad-hoc benchmarks record."""
    from procctl.config.locate import current_directory, find_manifest
    from procctl.engine.store import StateDir
    from procctl.errors import ManifestError

    try:
        manifest = find_manifest(file)
    except ManifestError:
        if file is not None:
            raise
        return StateDir(current_directory() / ".procctl").database
    return StateDir.beside(manifest).database


@app.command()
def history(
    name: Annotated[
        Optional[str], typer.Argument(metavar="[NAME]", help="A process or an instance (default: all).", show_default=False, autocompletion=complete_name)
    ] = None,
    file: FileOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to show, newest first.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """The recorded runs: exit, duration, peak RSS and CPU time of each."""
    from procctl.engine.history import list_runs
    from procctl.ui.tables import history_table

    database = state_database(file)
    rows = list_runs(database, name=name, limit=limit)
    if name is not None and not rows:
        _check_known(name, file, database)
    if as_json:
        sys.stdout.write(dumps({"runs": [row.to_dict() for row in rows]}))
        return
    if not rows:
        typer.echo("no runs recorded yet" + (f" for {name}" if name else ""))
        return
    make_console().print(history_table(rows))


def _check_known(name: str, file: Path | None, database: Path) -> None:
    """A name with no runs is either one that has not run yet (fine) or one
    that names nothing: a UsageError with the nearest known name."""
    from procctl.config.select import unknown_name
    from procctl.engine.history import list_runs
    from procctl.engine.logread import process_of
    from procctl.errors import ManifestError

    known: dict[str, None] = {}
    try:
        known.update(dict.fromkeys(load_manifest_option(file).processes))
    except ManifestError:
        if file is not None:
            raise
    recent = list_runs(database, limit=1000)
    known.update(dict.fromkeys(row.process for row in recent))
    if not known or name in known or process_of(name) in known:
        return  # (nothing known at all: nothing to say it is wrong)
    raise unknown_name(name, known, [row.instance for row in recent])

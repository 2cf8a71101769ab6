"""`procctl export FORMAT [DIR]`: the manifest's services as systemd units, a
compose file or a supervisord config."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, load_manifest_option
from procctl.errors import UsageError

_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ExportFormat(str, enum.Enum):
    systemd = "systemd"
    compose = "compose"
    supervisord = "supervisord"


@app.command("export")
def export(
    fmt: Annotated[ExportFormat, typer.Argument(metavar="FORMAT", help="systemd, compose or supervisord.", show_default=False)],
    directory: Annotated[
        Optional[Path], typer.Argument(metavar="DIR", help="Where to write the files (as honcho and foreman take it).", show_default=False)
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Where to write the files (the same as DIR).", show_default=False)
    ] = None,
    file: FileOption = None,
    app_name: Annotated[
        Optional[str],
        typer.Option("--app", "-a", help="Name of the app: unit prefix, compose project, supervisord group. Default: the manifest's directory name.", show_default=False),
    ] = None,
    user: Annotated[Optional[str], typer.Option("--user", "-u", help="Run the services as this user.", show_default=False)] = None,
    image: Annotated[
        Optional[str], typer.Option("--image", help="compose: the image the services run in (required there).", show_default=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the files, each headed by its name, and write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace files in DIR that procctl export did not write.")] = False,
) -> None:
    """Write what runs the manifest's services under systemd, docker compose or supervisord."""
    from procctl.export import Options, render
    from procctl.export.model import HEADER, check_app_name, default_app_name, printable

    if directory is not None and output is not None and directory != output:
        raise UsageError("give the directory once: DIR or -o DIR")
    target = output if output is not None else directory
    if target is None and not dry_run:
        raise UsageError(f"where to? procctl export {fmt.value} DIR (or -o DIR), or --dry-run to print the files")
    if fmt is ExportFormat.compose and not image:
        raise UsageError("compose needs --image IMAGE: a manifest names no image, and the services need one that holds what their commands run")
    if image is not None and fmt is not ExportFormat.compose:
        raise UsageError("--image is for compose only")
    if user is not None and not _USER.match(user):
        raise UsageError(f"--user: {user!r} is not a user name")
    manifest = load_manifest_option(file)
    options = Options(app=check_app_name(app_name) if app_name is not None else default_app_name(manifest), user=user, image=image)
    files, exported = render(manifest, fmt.value, options)
    for note in exported.notes:
        typer.echo(f"procctl: export: {note}", err=True)
    if dry_run:
        typer.echo("\n".join(f"==> {printable(name)} <==\n{text}" for name, text in files.items()), nl=False)
        return
    from procctl.export.write import write_files

    assert target is not None
    result = write_files(target, files, owner_line=f"{HEADER} {fmt.value} for {options.app} from ", force=force)
    for path in result.written:
        typer.echo(f"wrote {path}")
    for path in result.removed:
        typer.echo(f"removed {path} (from an earlier export; no longer in the manifest)")
    typer.echo(_next_step(fmt, options.app, target))


def _next_step(fmt: ExportFormat, app_name: str, target: Path) -> str:
    if fmt is ExportFormat.systemd:
        return f"then, with {target} in systemd's unit path: systemctl daemon-reload && systemctl start {app_name}.target"
    if fmt is ExportFormat.compose:
        return f"then: docker compose -f {target / 'compose.yaml'} up -d"
    return f"then, with {target} in supervisord's [include] files: supervisorctl update && supervisorctl start {app_name}:*"

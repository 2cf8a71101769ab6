"""`procctl init` and `procctl import`: writing manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import app
from procctl.errors import UsageError


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



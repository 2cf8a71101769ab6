"""`procctl init` and `procctl import`: writing manifests."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import app
from procctl.errors import UsageError


@app.command()
def init(
    file: Annotated[Path, typer.Option("--file", "-f", help="Where to write the manifest.")] = Path("procfile.toml"),
    example: Annotated[
        bool, typer.Option("--example", help="Write the demos instead: the demo's manifest, the other example manifests (shared_table.toml) and the small Python scripts they run, beside the manifest.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a starter procfile.toml, or the demo with --example."""
    from procctl.config.writer import EXAMPLE_MANIFEST, example_files, starter_manifest

    if not example:
        _write_new(file, starter_manifest(), force)
        typer.echo(f"wrote {file}; run it with: procctl run -f {file}")
        return
    files = example_files()
    targets = {name: file if name == EXAMPLE_MANIFEST else file.parent / name for name in files}
    existing = [str(path) for path in targets.values() if path.exists() or path.is_symlink()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; use --force to overwrite")
    for name, path in targets.items():
        _write_new(path, files[name].decode("utf-8"), True)
    scripts = ", ".join(str(path) for name, path in targets.items() if name != EXAMPLE_MANIFEST)
    typer.echo(f"wrote {file} and {scripts}; run the demo with: procctl run -f {file}")


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
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    # Never through a symlink, --force or not: in a directory others can
    # write, one could point a manifest at a file of ours.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        why = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror or exc
        raise UsageError(f"cannot write {path}: {why}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)

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
    file: Annotated[Path, typer.Option("--file", "-f", metavar="FILE", help="The manifest to write.")] = Path("procfile.toml"),
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
    procfile: Annotated[Path, typer.Argument(metavar="[PROCFILE]", help="The Procfile to convert.")] = Path("Procfile"),
    env_file: Annotated[
        Optional[Path],
        typer.Option(
            "--env",
            metavar="FILE",
            help="The .env file the manifest's [settings] env_file names (its values stay there, out of the manifest). Default: .env beside the Procfile, if any.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[Path, typer.Option("--file", "-f", metavar="FILE", help="The manifest to write.")] = Path("procfile.toml"),
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Deprecated spelling of -f.", hidden=True, show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Convert a Procfile (and its .env) into procfile.toml; refused if procctl check would refuse it."""
    from procctl.config.writer import manifest_from_procfile

    if output is not None:
        typer.echo("procctl: warning: 'import -o' is deprecated: -f names the manifest in every command, the one import writes too", err=True)
        file = output
    if not procfile.is_file():
        raise UsageError(f"no such Procfile: {procfile}")
    if env_file is None:
        beside = procfile.parent / ".env"
        env_file = beside if beside.is_file() else None
    elif not env_file.is_file():
        raise UsageError(f"--env: no such file: {env_file}")
    _write_checked(file, manifest_from_procfile(procfile, env_file, file), force)
    typer.echo(f"wrote {file} from {procfile}" + (f", reading the environment from {env_file}" if env_file else ""))


def _write_checked(path: Path, text: str, force: bool) -> None:
    """Write a manifest only if it loads as `procctl check` loads it: through
    a file beside it (relative paths in it resolve as they will), then put in place."""
    from procctl.config.loader import load_manifest
    from procctl.errors import ManifestError

    if path.suffix != ".toml":
        raise UsageError(f"{path}: procctl reads a manifest as TOML only when its name ends in .toml")
    _refuse_existing(path, force)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.toml")
    _write_new(partial, text, False)
    try:
        try:
            load_manifest(partial)
        except ManifestError as exc:
            exc.path = path.name
            raise
        os.replace(partial, path)  # replaces a symlink itself, never writes through one
    finally:
        partial.unlink(missing_ok=True)


def _refuse_existing(path: Path, force: bool) -> None:
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    if path.is_symlink():
        raise UsageError(f"cannot write {path}: it is a symlink")


def _write_new(path: Path, text: str, force: bool) -> None:
    _refuse_existing(path, force)
    # Never through a symlink, --force or not: in a directory others can
    # write, one could point a manifest at a file of ours.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        why = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror or exc
        raise UsageError(f"cannot write {path}: {why}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)

"""`procctl shm ls|read|write`: the running supervisor's shared memory regions.

Bytes travel over the control socket in pieces (base64 in the JSON lines,
at most `PIECE_BYTES` a request), one connection for the whole transfer.
A write is checked against the region's end before its first byte is sent,
so an out-of-bounds write changes nothing.
"""

from __future__ import annotations

import base64
import enum
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from procctl.cli.app import FileOption, app, make_console
from procctl.errors import UsageError
from procctl.jsonout import dumps

READ_PIECE_BYTES = 1024 * 1024
WRITE_PIECE_BYTES = 32 * 1024
"""A write request carries this much (as base64, under the request size limit)."""


class Action(str, enum.Enum):
    ls = "ls"
    read = "read"
    write = "write"


def _connection(file: Path | None) -> Any:
    from procctl.control.address import supervisor_of
    from procctl.control.client import Connection

    path, manifest = supervisor_of(file)
    return Connection(path, manifest)


def _region(regions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for region in regions:
        if region["name"] == name:
            return region
    from procctl.config.reading import nearest

    names = [region["name"] for region in regions]
    close = nearest(name, names)
    hint = f" (did you mean {close!r}?)" if close else ""
    raise UsageError(f"unknown shared region {name!r}{hint}; regions of this run: {', '.join(names) or 'none'}")


def _span(region: dict[str, Any], offset: int, length: int, verb: str) -> None:
    if offset < 0 or length < 0:
        raise UsageError(f"shm {verb}: --offset and --length cannot be negative")
    size = region["size_bytes"]
    if offset > size:
        raise UsageError(f"shm {verb} {region['name']}: offset {offset} is past its end ({size} bytes)")
    if offset + length > size:
        raise UsageError(f"shm {verb} {region['name']}: {length} bytes at offset {offset} go past its end ({size} bytes)")


@app.command()
def shm(
    action: Annotated[Action, typer.Argument(metavar="ACTION", help="ls: list the regions; read: bytes to stdout; write: bytes from stdin.", show_default=False)],
    name: Annotated[Optional[str], typer.Argument(metavar="[REGION]", help="The region ([shared.NAME]) to read or write.", show_default=False)] = None,
    offset: Annotated[int, typer.Option("--offset", help="Where to read or write, in bytes from the region's start.")] = 0,
    length: Annotated[
        Optional[int], typer.Option("--length", help="Bytes to read (default: up to the region's end).", show_default=False)
    ] = None,
    file: FileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="ls: print the regions as JSON.")] = False,
) -> None:
    """List the run's shared memory regions, or read or write bytes at an offset."""
    if action is not Action.ls and not name:
        raise UsageError(f"shm {action.value}: name the region (procctl shm {action.value} NAME)")
    if action is Action.read and length is not None and length < 0:
        raise UsageError("shm read: --length cannot be negative")
    with _connection(file) as connection:
        regions = connection.call("shm", {"op": "ls"})["regions"]
        if action is Action.ls:
            _list(regions, as_json)
        elif action is Action.read:
            region = _region(regions, name or "")
            count = max(region["size_bytes"] - offset, 0) if length is None else length
            _span(region, offset, count, "read")
            _read(connection, region["name"], offset, count)
        else:
            region = _region(regions, name or "")
            room = region["size_bytes"] - offset
            _span(region, offset, 0, "write")
            # One byte more than fits tells a write that is too long.
            data = sys.stdin.buffer.read(room + 1)
            if len(data) > room:
                raise UsageError(
                    f"shm write {region['name']}: the data is longer than the {room} bytes from offset {offset} to its end ({region['size_bytes']} bytes)"
                )
            _write(connection, region["name"], offset, data)
            typer.echo(f"wrote {len(data)} bytes to {region['name']} at offset {offset}", err=True)


def _list(regions: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(dumps({"regions": regions}))
        return
    from procctl.ui.tables import regions_table

    make_console().print(regions_table(regions))


def _read(connection: Any, name: str, offset: int, count: int) -> None:
    out = sys.stdout.buffer
    done = 0
    while done < count:
        piece = min(READ_PIECE_BYTES, count - done)
        reply = connection.call("shm", {"op": "read", "name": name, "offset": offset + done, "length": piece})
        out.write(base64.b64decode(reply["data"]))
        done += piece
    out.flush()


def _write(connection: Any, name: str, offset: int, data: bytes) -> None:
    for start in range(0, len(data), WRITE_PIECE_BYTES):
        piece = data[start : start + WRITE_PIECE_BYTES]
        connection.call("shm", {"op": "write", "name": name, "offset": offset + start, "data": base64.b64encode(piece).decode()})

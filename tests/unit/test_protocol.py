"""The table of verbs, as the client and the server both check requests by
it, and a server that answers whatever its handler does."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from procctl.control.protocol import ProtocolError, Request, decode_request, make_request
from procctl.control.server import ControlServer


def test_requests_are_checked_by_the_table_on_both_sides() -> None:
    assert make_request("kill", {"names": ["web"], "signal": "HUP"}, id=3) == Request("kill", {"names": ["web"], "signal": "HUP"}, 3)
    for verb, args, message in (
        ("explode", {}, "unknown verb 'explode'"),
        ("pause", {"names": "web"}, "pause: argument 'names' has the wrong type"),
        ("pause", {"everything": True}, "pause: unknown argument 'everything'"),
        ("scale", {"process": "web"}, "scale: needs 'replicas'"),
        ("scale", {}, "scale: needs 'process' and 'replicas'"),
        ("scale", {"process": "web", "replicas": True}, "scale: argument 'replicas' must be an integer"),
    ):
        with pytest.raises(ProtocolError, match=message):
            make_request(verb, args)
        with pytest.raises(ProtocolError, match=message):
            decode_request(json.dumps({"verb": verb, "args": args}).encode())


def test_a_request_nested_too_deeply_is_malformed_not_a_crash() -> None:
    """Within the size bound, `[` × 50,000 makes the parser recurse past
    Python's limit: a ProtocolError (an error reply), not a RecursionError."""
    for line in (b"[" * 50_000 + b"\n", b'{"verb": "ping", "args": ' + b'{"a": ' * 10_000 + b"\n"):
        with pytest.raises(ProtocolError, match="^malformed request: nested too deeply$"):
            decode_request(line)


class Face:
    """An engine face whose `status` fails the way a bug would."""

    def ping(self) -> dict[str, Any]:
        return {"pong": True, "pid": 1}

    def status(self) -> dict[str, Any]:
        raise RuntimeError("the sampler lost its mind")

    def scale(self, process: str, replicas: int) -> dict[str, Any]:
        raise OverflowError("Python int too large to convert to C int")


def test_whatever_a_handler_raises_is_an_error_reply_and_the_connection_serves_on() -> None:
    """1. `status` raises RuntimeError inside the supervisor: the reply says
       so with code 1, it does not drop the connection.
    2. `scale` raises OverflowError (a value past what the system takes): code 2.
    3. The same connection then answers `ping`."""

    async def scenario(path: Path) -> list[dict[str, Any]]:
        server = ControlServer(Face(), path, path.parent / "procfile.toml")  # type: ignore[arg-type]
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            lines = [
                {"id": 1, "verb": "status"},
                {"id": 2, "verb": "scale", "args": {"process": "web", "replicas": 3}},
                {"id": 3, "verb": "ping"},
            ]
            writer.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
            replies = [json.loads(await asyncio.wait_for(reader.readline(), 30)) for _ in lines]
            writer.close()
            await writer.wait_closed()
            return replies
        finally:
            await server.close()

    with tempfile.TemporaryDirectory(prefix="procctl-") as tmp:
        status, scale, ping = asyncio.run(scenario(Path(tmp) / "s.sock"))
    assert status == {"id": 1, "ok": False, "error": "status failed in the supervisor: RuntimeError: the sampler lost its mind", "code": 1}
    assert scale["ok"] is False and scale["code"] == 2 and "too large" in scale["error"]
    assert ping == {"id": 3, "ok": True, "result": {"pong": True, "pid": 1}}

"""The control protocol: one JSON object per line, each way. Pure.

Request: {"id": 1, "verb": "pause", "args": {"names": ["web"]}}
Reply:   {"id": 1, "ok": true, "result": {...}}
      or {"id": 1, "ok": false, "error": "unknown process 'x'; ...", "code": 2}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from procctl.config.manifest import MAX_REPLICAS

MAX_REQUEST_BYTES = 64 * 1024
"""A request line longer than this is refused unread."""
MAX_SEND_BYTES = 16 * 1024
"""The longest text `send` writes to a process's stdin at once."""

VERBS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ping": {},
    "status": {},
    "pause": {"names": list, "all": bool},
    "resume": {"names": list, "all": bool},
    "kill": {"names": list, "signal": (str, int, type(None))},
    "restart": {"names": list},
    "start": {"names": list},
    "scale": {"process": str, "replicas": int},
    "send": {"names": list, "all": bool, "text": str},
    "limits": {"names": list, "set": dict},
    "shutdown": {},
}
"""Every verb and the type of each argument it takes (all optional unless the
handler says otherwise)."""


class ProtocolError(Exception):
    """A request that cannot be understood. Its text goes back in the reply,
    with the request's id when that much could be read."""

    def __init__(self, message: str, id: int | str | None = None) -> None:
        super().__init__(message)
        self.id = id


@dataclasses.dataclass(frozen=True)
class Request:
    verb: str
    args: dict[str, Any]
    id: int | str | None = None

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "verb": self.verb, "args": self.args}).encode() + b"\n"


@dataclasses.dataclass(frozen=True)
class Reply:
    ok: bool
    result: Any = None
    error: str | None = None
    code: int = 0
    """For an error: the exit code the client should end with (2 usage, 1 other)."""
    id: int | str | None = None

    def encode(self) -> bytes:
        data: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.ok:
            data["result"] = self.result
        else:
            data["error"] = self.error
            data["code"] = self.code
        return json.dumps(data, default=str).encode() + b"\n"

    @classmethod
    def failure(cls, message: str, code: int = 2, id: int | str | None = None) -> Reply:
        return cls(ok=False, error=message, code=code, id=id)


def decode_request(line: bytes) -> Request:
    """Parse and check one request line. Raises ProtocolError."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request too large ({len(line)} bytes; at most {MAX_REQUEST_BYTES})")
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed request: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed request: expected a JSON object")
    try:
        return _checked(data)
    except ProtocolError as exc:
        request_id = data.get("id")
        exc.id = request_id if isinstance(request_id, (int, str)) and not isinstance(request_id, bool) else None
        raise


def _checked(data: dict[str, Any]) -> Request:
    verb = data.get("verb")
    if not isinstance(verb, str) or verb not in VERBS:
        known = ", ".join(VERBS)
        raise ProtocolError(f"unknown verb {verb!r}; known verbs: {known}")
    args = data.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError("malformed request: 'args' must be an object")
    schema = VERBS[verb]
    for key, value in args.items():
        if key not in schema:
            raise ProtocolError(f"{verb}: unknown argument {key!r}")
        expected = schema[key]
        if isinstance(value, bool) and expected is int:
            raise ProtocolError(f"{verb}: argument {key!r} must be an integer")
        if not isinstance(value, expected):
            raise ProtocolError(f"{verb}: argument {key!r} has the wrong type")
        if expected is list and not all(isinstance(item, str) for item in value):
            raise ProtocolError(f"{verb}: argument {key!r} must be a list of names")
    _check_bounds(verb, args)
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, (int, str)):
        raise ProtocolError("malformed request: 'id' must be a number or a string")
    return Request(verb=verb, args=args, id=request_id)


def _check_bounds(verb: str, args: dict[str, Any]) -> None:
    """Every count and size a request can set, checked before anything
    happens (the limits' values are checked where they are parsed)."""
    if verb == "scale" and "replicas" in args and not 0 <= args["replicas"] <= MAX_REPLICAS:
        raise ProtocolError(f"scale: replicas must be 0 to {MAX_REPLICAS:,} (the manifest's own cap), got {args['replicas']:,}")
    if verb == "send" and len(args.get("text", "").encode("utf-8", "surrogatepass")) > MAX_SEND_BYTES:
        raise ProtocolError(f"send: the text is longer than {MAX_SEND_BYTES:,} bytes")


def decode_reply(line: bytes) -> Reply:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed reply from the supervisor: {exc}") from None
    if not isinstance(data, dict) or "ok" not in data:
        raise ProtocolError("malformed reply from the supervisor")
    return Reply(
        ok=bool(data["ok"]),
        result=data.get("result"),
        error=data.get("error"),
        code=int(data.get("code") or 0),
        id=data.get("id"),
    )

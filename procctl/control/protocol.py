"""The control protocol: one JSON object per line, each way. Pure.

Request: {"id": 1, "verb": "pause", "args": {"names": ["web"]}}
Reply:   {"id": 1, "ok": true, "result": {...}}
      or {"id": 1, "ok": false, "error": "unknown process 'x'; ...", "code": 2}
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from procctl.bounds import MAX_POOL, MAX_REPLICAS, MAX_TRANSFER_BYTES

MAX_REQUEST_BYTES = 64 * 1024
"""A request line longer than this is refused unread."""
REQUEST_TIMEOUT_S = 10.0
"""A connection sends its whole next request (from its start, or from the
last reply) within this, or is answered with an error and closed: generous
for a loaded machine, short for a client that holds a connection by never
finishing one."""
MAX_SEND_BYTES = 16 * 1024
"""The longest text `send` writes to a process's stdin at once."""

# Named tuples, not dataclasses: every `procctl status --json` loads this
# module, and dataclasses (with inspect) cost it a tenth of its start-up.


class Arg(NamedTuple):
    """One argument of a verb."""

    name: str
    """Its key in the request's `args`."""
    type: type | tuple[type, ...]
    shown: str
    """How docs/control-protocol.md writes its type (and bound)."""
    param: str = ""
    """The handler's parameter, when it is named otherwise."""
    required: bool = False


class Verb(NamedTuple):
    """One control verb: what a request may carry, which method of the
    engine's face (`engine.operations.Operations`) answers it, and what the
    reply holds. The server dispatches by this table, the client checks its
    requests against it, the CLI has one command per verb of the same name,
    and docs/control-protocol.md lists it row for row (a test compares)."""

    name: str
    handler: str
    args: tuple[Arg, ...]
    does: str
    result: str
    caller: str = ""
    """The handler's parameter that gets the pid of the process at the
    other end of the connection (SO_PEERCRED), when it takes one: who asks is
    what the kernel says, never what a request says."""

    def call_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The request's args as the handler's keyword arguments."""
        return {(arg.param or arg.name): args[arg.name] for arg in self.args if arg.name in args}


_NAMES = Arg("names", list, "[str]")
_ALL = Arg("all", bool, "bool", param="everything")

VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb("ping", "ping", (), "nothing", '`{"pong": true, "pid": 1234}`'),
        Verb("status", "status", (), "snapshot of every instance", "see below"),
        Verb(
            "pause", "pause", (_NAMES, _ALL),
            "SIGSTOP to each instance's whole tree (its group and descendants that left it); its `timeout` and readiness "
            "deadline stop running. A stopping instance is not paused. `all` pauses everything and holds the queue: nothing new starts",
            '`{"paused": [str], "queue_held": bool}`',
        ),
        Verb("resume", "resume", (_NAMES, _ALL), "SIGCONT; timers continue; `all` releases the queue", '`{"resumed": [str], "queue_held": bool}`'),
        Verb(
            "kill", "kill", (_NAMES, Arg("signal", (str, int, type(None)), "str\\|int\\|null", param="sig")),
            "without `signal`: graceful stop (stop_signal, then SIGKILL after stop_timeout), and no restart. With `signal` "
            '(`"HUP"`, `"SIGUSR1"`, `9`): deliver just that signal to each group',
            '`{"stopping": [str]}` or `{"signalled": [str], "signal": "SIGHUP"}`',
        ),
        Verb(
            "restart", "restart", (_NAMES,),
            "stop the current run and start again at once (no backoff); an instance that has ended starts again",
            '`{"restarting": [str]}`',
        ),
        Verb("start", "start", (_NAMES,), "start instances that have ended", '`{"starting": [str], "already_running": [str]}`'),
        Verb(
            "scale", "scale", (Arg("process", str, "str", required=True), Arg("replicas", int, f"int (0 to {MAX_REPLICAS:,})", required=True)),
            "start or stop replicas (`web.3` gets `PORT = port + 2`)",
            '`{"process", "replicas", "added": [str], "removed": [str]}`',
        ),
        Verb(
            "pool", "pool", (Arg("size", int, f"int (1 to {MAX_POOL:,})"),),
            "show the pool; with `size`, make it that many jobs at once from now on (under `auto`, its cap). On a cluster "
            "the pool is the window of jobs in flight there. Running jobs are not stopped by a smaller pool",
            '`{"size", "cap", "auto", "running", "waiting", "schedule"}`',
        ),
        Verb(
            "send", "send", (_NAMES, _ALL, Arg("text", str, f"str (at most {MAX_SEND_BYTES:,} bytes)")),
            "write `text` and a newline to each running instance's stdin. When the connecting process belongs to an instance's "
            "tree (as `SO_PEERCRED` says), that instance is the sender: the `message` events name it, and `all` leaves it out. "
            "An instance with 1 MiB of earlier messages still unread gets none",
            '`{"sent": [str], "from": str\\|null}`, and `"not_read": [str]` when some were not sent',
            caller="sender_pid",
        ),
        Verb(
            # (config.values.LIVE_LIMITS, written out: the client imports nothing it need not.)
            "limits", "limits", (_NAMES, Arg("set", dict, "{memory, cpu_time, nofile, nproc, cpu_percent}", param="changes")),
            "show limits, mechanisms and usage; with `set`, change them on the live trees and for later runs",
            '`{"instances": [...]}`',
        ),
        Verb(
            "shm", "shm",
            (
                Arg("op", str, '"ls"\\|"read"\\|"write"', required=True), Arg("name", str, "str"),
                Arg("offset", int, "int (≥ 0)"), Arg("length", int, f"int (0 to {MAX_TRANSFER_BYTES:,})"), Arg("data", str, "base64 str"),
            ),
            "the shared memory regions: `ls` lists them and which instances use them; `read` returns `length` bytes of region "
            "`name` from `offset`, `write` writes `data` there (past its end is an error, and nothing is written)",
            '`ls`: `{"regions": [{"name", "size_bytes", "resident_bytes", "users": [{"instance", "mode", "pid", "mapped"}]}]}`; '
            '`read`: `{"name", "offset", "data": base64}`; `write`: `{"name", "offset", "written": int}`',
        ),
        Verb(
            "reload", "reload", (Arg("dry_run", bool, "bool"),),
            "read the manifest again and apply it: new processes start, removed ones stop gracefully, changed ones restart "
            "(cmd, env, env file contents, cwd, limits, probes…), replicas and `each` items are added or stopped, the rest keep "
            "running with the same pid. An invalid manifest is refused with its file:line:key error, and nothing changes. "
            "`dry_run`: only say what it would do",
            '`{"dry_run": bool, "processes": [{"process", "action", "changes": [str], "started": [str], "stopped": [str], '
            '"restarted": [str], "kept": [str]}], "settings": [str], "notes": [str]}`',
        ),
        Verb(
            "shutdown", "shutdown", (),
            "graceful stop of everything, in reverse dependency order (what `procctl down` sends)", '`{"stopping": true}`',
        ),
        Verb(
            "subscribe", "subscribe", (),
            "turn this connection into a stream of events (see The subscription); what `procctl top` uses",
            '`{"status": <status result>, "instances": [{"name", "process", "log", "each", "pooled"}]}`, then events',
        ),
    )
}  # fmt: skip
"""Every verb, in the order the docs list them."""


class ProtocolError(Exception):
    """A request that cannot be understood. Its text goes back in the reply,
    with the request's id when that much could be read."""

    def __init__(self, message: str, id: int | str | None = None) -> None:
        super().__init__(message)
        self.id = id


class Request(NamedTuple):
    verb: str
    args: dict[str, Any]
    id: int | str | None = None

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "verb": self.verb, "args": self.args}).encode() + b"\n"


class Reply(NamedTuple):
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


def make_request(verb: str, args: dict[str, Any] | None = None, id: int | str | None = None) -> Request:
    """A request as a client sends it, checked against the table as the
    server will check it. Raises ProtocolError."""
    return _checked({"id": id, "verb": verb, "args": args or {}})


def decode_request(line: bytes) -> Request:
    """Parse and check one request line. Raises ProtocolError."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request too large ({len(line)} bytes; at most {MAX_REQUEST_BYTES})")
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed request: not JSON ({exc})") from None
    except RecursionError:
        # `[[[[…` within the size bound: the parser recurses once a level.
        raise ProtocolError("malformed request: nested too deeply") from None
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
    schema = {arg.name: arg.type for arg in VERBS[verb].args}
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
    missing = [arg.name for arg in VERBS[verb].args if arg.required and arg.name not in args]
    if missing:
        raise ProtocolError(f"{verb}: needs " + " and ".join(repr(name) for name in missing))
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
    if verb == "shm":
        if args["op"] not in ("ls", "read", "write"):
            raise ProtocolError(f"shm: op is ls, read or write, not {args['op']!r}")
        if args.get("offset", 0) < 0 or not 0 <= args.get("length", 0) <= MAX_TRANSFER_BYTES:
            raise ProtocolError(f"shm: offset must be ≥ 0 and length 0 to {MAX_TRANSFER_BYTES:,}")


def decode_reply(line: bytes) -> Reply:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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

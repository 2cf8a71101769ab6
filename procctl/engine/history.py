"""Run history in `.procctl/state.db` (stdlib sqlite3): one row per run of
an instance, with its exit, duration, peak RSS and CPU time.

The schema is created on first use and versioned with `PRAGMA user_version`.
Rows are written in batches (each sampler tick, and at the end of the
supervisor's run) so that thousands of short jobs do not pay a commit each.
The database must never stop a run: a corrupt or unwritable file disables the
history for the run with one warning; a locked one keeps the rows and retries.

`list_runs` is the reading side: `procctl history`, and the predictions of
how long a job will take and how much memory it needs (engine.predict).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from pathlib import Path

from procctl.engine.store import StateDir
from procctl.errors import ProcctlError
from procctl.states import State

if TYPE_CHECKING:
    import sqlite3

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id             INTEGER PRIMARY KEY,
    manifest       TEXT NOT NULL,
    process        TEXT NOT NULL,
    instance       TEXT NOT NULL,
    item           TEXT,
    command        TEXT NOT NULL,
    session        TEXT NOT NULL,
    started_at     REAL NOT NULL,
    ended_at       REAL NOT NULL,
    status         TEXT NOT NULL,
    exit_code      INTEGER,
    signal         INTEGER,
    duration_s     REAL NOT NULL,
    peak_rss_bytes INTEGER,
    cpu_time_s     REAL,
    restarts       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_process ON runs (manifest, process, started_at);
"""

BUSY_TIMEOUT_S = 0.2
"""How long a write waits for another procctl's lock while the run goes on."""
CLOSE_TIMEOUT_S = 2.0
"""How long the last write waits for it."""
MAX_PENDING = 10_000
"""Rows kept while the database is locked; older ones are dropped past this."""


def command_text(cmd: str | tuple[str, ...] | list[str]) -> str:
    """A job's command as the history stores it: a shell string as written,
    an argument list joined the way a shell would read it back."""
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


class HistoryError(ProcctlError):
    """The history database cannot be read."""


class RunRow(NamedTuple):
    """One run of one instance. (A named tuple: `check` reads these for its
    predictions, and a dataclass cost it 1.5 ms to make at every start.)"""

    manifest: str
    """Absolute path of the manifest."""
    process: str
    instance: str
    """`web`, `web.2`, `thumb[7]`."""
    item: str | None
    """The `each` item of the instance, if any."""
    command: str
    """The command as run ({item}, {port} substituted; a list joined by spaces)."""
    session: str
    """Identifies the `procctl run` the row belongs to (`STARTEPOCH-PID`)."""
    started_at: float
    """Epoch seconds."""
    ended_at: float
    status: str
    """The state this run ended in: `exited`, `failed`, `killed`, `timed_out`..."""
    exit_code: int | None
    signal: int | None
    duration_s: float
    """Wall time of this run."""
    peak_rss_bytes: int | None
    """Highest RSS of the whole tree; None if it ended before it was measured."""
    cpu_time_s: float | None
    """User + system CPU seconds of the tree."""
    restarts: int
    """Restarts of the instance before this run (0 for its first run)."""

    def to_dict(self) -> dict[str, object]:
        """As `history --json` prints it: `status` is called `state` there, as
        in every other JSON procctl prints."""
        return {("state" if key == "status" else key): value for key, value in self._asdict().items()}


_COLUMNS = RunRow._fields
"""The table's columns, in the order of a RunRow's fields: a row is written as it is."""
_INSERT = f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def _location(path: Path, *, create: bool) -> str | None:
    """The database at `path` (in a `.procctl/`), reached through the checked
    state directory, never through a link; None when there is none and not
    `create`. Raises StateDirError."""
    return StateDir(path.parent).reach(path.name, create=create, companions=_COMPANIONS)


def _connect(location: str, timeout_s: float, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the database at `location` (from `_location`). Raises
    sqlite3 errors. (sqlite3 is imported here: `check` of a manifest that
    never ran, and a run until its first spawn, need not load it.)"""
    import sqlite3

    if readonly:
        return sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None)
    return sqlite3.connect(location, timeout=timeout_s, isolation_level=None)


_COMPANIONS = ("state.db-journal", "state.db-wal", "state.db-shm")
"""The files sqlite keeps beside the database."""


def _prepare(conn: sqlite3.Connection) -> None:
    """Create or check the schema. Raises sqlite3 errors, or HistoryError for a
    database of a newer procctl."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(f"schema version {version} is newer than this procctl's ({SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    # WAL: `procctl history` may read while a supervisor writes.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


def _locked(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc)


class History:
    """The writing side: rows are added at the end of each run and written in
    batches by `flush`. Errors become warnings through `warn`, at most one per
    kind; they never raise."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path = path
        self._warn = warn
        self._conn: sqlite3.Connection | None = None
        self._pending: list[RunRow] = []
        self.disabled = False
        self.written = 0
        self._warned_locked = False
        self.dropped = 0

    def _fail(self, exc: BaseException) -> None:
        self.disabled = True
        dropped = len(self._pending)
        self._pending.clear()
        self._close_conn()
        what = str(exc) or type(exc).__name__
        lost = f"; {dropped} runs not recorded" if dropped else ""
        self._warn(f"run history off for this run: {self.path}: {what} (move the file away to start a new history){lost}")

    def _close_conn(self) -> None:
        if self._conn is not None:
            import sqlite3

            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def open(self, timeout_s: float = BUSY_TIMEOUT_S) -> bool:
        """Open (and create) the database now; False if the history is off."""
        if self.disabled:
            return False
        if self._conn is not None:
            return True
        import sqlite3

        try:
            StateDir(self.path.parent).prepare()  # private, with its .gitignore, even for a benchmark alone
            location = _location(self.path, create=True)
            assert location is not None
            conn = _connect(location, timeout_s)
            try:
                _prepare(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            if _locked(exc):
                self._warn_locked()
            else:
                self._fail(exc)
            return False
        except (OSError, ProcctlError) as exc:
            self._fail(exc)
            return False
        self._conn = conn
        return True

    def _warn_locked(self) -> None:
        if not self._warned_locked:
            self._warned_locked = True
            self._warn(f"run history: {self.path} is locked by another process; rows are kept and written later")

    def add(self, row: RunRow) -> None:
        if self.disabled:
            return
        self._pending.append(row)
        if len(self._pending) > MAX_PENDING:
            cut = len(self._pending) - MAX_PENDING
            del self._pending[:cut]
            self.dropped += cut

    def flush(self, timeout_s: float = BUSY_TIMEOUT_S) -> bool:
        """Write the pending rows. True when nothing is left pending."""
        if self.disabled or not self._pending:
            return not self._pending
        if not self.open(timeout_s):
            return False
        assert self._conn is not None
        import sqlite3

        rows = self._pending
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(_INSERT, rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn is not None and self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if _locked(exc):
                self._warn_locked()
            else:
                self._fail(exc)
            return False
        self.written += len(rows)
        self._pending.clear()
        return True

    def close(self) -> None:
        """The last write (waiting a little longer for a lock), then close."""
        if not self.flush(CLOSE_TIMEOUT_S) and not self.disabled and self._pending:
            self._warn(f"run history: {len(self._pending)} runs not recorded: {self.path} stayed locked")
            self._pending.clear()
        self._close_conn()


# ------------------------------------------------------------------ read


def _row(values: sqlite3.Row) -> RunRow:
    row = RunRow(**{name: values[name] for name in _COLUMNS})
    # Rows written before states were single tokens say `timed out`.
    return row._replace(status=row.status.replace(" ", "_")) if " " in row.status else row


def _query(db_path: Path, where: str, args: list[object], limit: int | None) -> list[RunRow]:
    location = _location(db_path, create=False)
    if location is None:
        return []
    import sqlite3

    try:
        conn = _connect(location, CLOSE_TIMEOUT_S, readonly=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            return []
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{db_path}: schema version {version} is newer than this procctl's ({SCHEMA_VERSION})")
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs {where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args = [*args, limit]
        return [_row(values) for values in conn.execute(sql, args)]
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: {exc} (move the file away to start a new history)") from None
    finally:
        conn.close()


def list_runs(db_path: Path, manifest: str | os.PathLike[str] | None = None, name: str | None = None, limit: int | None = 20) -> list[RunRow]:
    """The latest runs (newest first) of a manifest; `name` is a process or an instance."""
    clauses: list[str] = []
    args: list[object] = []
    if manifest is not None:
        clauses.append("manifest = ?")
        args.append(str(manifest))
    if name is not None:
        clauses.append("(process = ? OR instance = ?)")
        args.extend([name, name])
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return _query(db_path, where, args, limit)


def last_failed_items(db_path: Path, manifest: str | os.PathLike[str], process: str) -> list[str] | None:
    """The `each` items of `process` whose last attempt failed (failed,
    killed, timed out, over a limit) in the last recorded run of that
    process, in the order they ran; None when it has no recorded run."""
    latest = _query(db_path, "WHERE manifest = ? AND process = ?", [str(manifest), process], 1)
    if not latest:
        return None
    rows = _query(db_path, "WHERE manifest = ? AND process = ? AND session = ?", [str(manifest), process, latest[0].session], None)
    last: dict[str, RunRow] = {}
    for row in rows:  # newest first: the first row of an instance is its last attempt
        last.setdefault(row.instance, row)
    failures = {str(state) for state in State if state.failure}
    failed = [row for row in last.values() if row.item is not None and row.status in failures]
    return [row.item for row in sorted(failed, key=lambda row: row.started_at) if row.item is not None]

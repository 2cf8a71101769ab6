"""The errors procctl reports. Each carries the exit code the CLI turns it into.

Raised deep, caught once in `procctl.cli`, printed as one line: `procctl: <message>`.
"""

from __future__ import annotations

TIMEOUT_EXIT = 124
"""`run --timeout` ran out."""
INTERRUPTED_EXIT = 130
"""Interrupted (SIGINT, SIGTERM or SIGHUP), as a shell reports 128 + SIGINT."""
STDOUT_CLOSED_EXIT = 141
"""`run`'s output lost its reader (`procctl run | head`): stopped gracefully,
as a shell reports 128 + SIGPIPE for `yes | head`."""
COMMAND_NOT_FOUND = 127
CANNOT_EXECUTE = 126
"""A shell's codes for a command it cannot find, or cannot run (`procctl exec`)."""


class ProcctlError(Exception):
    """Base of every error procctl reports to its user."""

    exit_code = 1


class UsageError(ProcctlError):
    """Bad command-line usage: an unknown name, a bad option value."""

    exit_code = 2


class ManifestError(ProcctlError):
    """The manifest cannot be used. Names the file, the line and the key."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        line: int | None = None,
        key: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        self.suggestion = suggestion
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        key = f"{self.key}: " if self.key else ""
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"{where}{key}{self.message}{hint}"


class NoSupervisor(ProcctlError):
    """A control command found no supervisor running for this manifest."""

    exit_code = 3


class NoAnswer(ProcctlError):
    """The supervisor took a request but did not answer it in time (it is
    busy, or stopped)."""


class NotRunning(NoSupervisor):
    """No supervisor runs for this manifest at all: no socket, or nobody
    listening on it (not one that could not be reached)."""


class AnotherManifestRuns(NotRunning):
    """The supervisor of the manifest's directory runs another manifest."""


class SpawnError(ProcctlError):
    """A child could not be started (command not found, bad cwd)."""

    exit_code = 1


class StateDirError(ProcctlError):
    """`.procctl` (or a file in it, or the socket's directory) cannot be used
    safely: a symbolic link, not a directory, or someone else's."""

    exit_code = 2


class AlreadyRunning(ProcctlError):
    """A supervisor already runs for this manifest: it holds the lock."""

    exit_code = 2


class CommandFailed(ProcctlError):
    """A one-off command (`procctl exec`) could not be run: the exit code a
    shell would give."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ClusterError(ProcctlError):
    """A Dask cluster cannot take the run's jobs: Dask is not installed, the
    scheduler cannot be reached, its workers cannot import procctl, or a
    job's `memory` fits none of them. Nothing has started."""

    exit_code = 2

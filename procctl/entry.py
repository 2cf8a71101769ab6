"""The console script, and the one place errors become exits: a ProcctlError
is one line on stderr and its exit code, never a traceback.

The usual forms of `check`, `run` and `status --json` are answered without
loading the Typer app (procctl.cli.quick says which), and `procctl
--version` (alone) too: typer, rich and every command module cost several
times what these need to start. Every other command line goes to the app
unchanged.

procctl is Linux-only: it reads /proc, waits on pidfds, checks control
clients with SO_PEERCRED and limits trees with cgroups. Elsewhere (macOS,
where many Procfile users work, or a BSD) every command line is refused here
with one line saying so, before anything else is imported.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~5 ms of start-up that --version and status --json need not pay)
    from typing import NoReturn


def _quick(argv: list[str]) -> int | None:
    from procctl.cli.quick import answer

    return answer(argv)


def _not_linux() -> str | None:
    """Why procctl cannot run on this system, or None on Linux."""
    if sys.platform.startswith("linux"):
        return None
    return f"this system is {sys.platform}, not Linux: procctl needs /proc, pidfd, SO_PEERCRED and cgroups, which only Linux has"


def _standard_streams() -> None:
    """A standard descriptor procctl was started without (`procctl run >&-`,
    a parent that closed it) is /dev/null from here on, as a daemon makes
    its own: Python left its stream None, so the first write would raise,
    and the first file procctl opened would take its number (a log, or the
    socket, written to as if it were stdout)."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        if getattr(sys, name) is None:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="backslashreplace", closefd=False))


def main() -> NoReturn:
    """Run the command line; a ProcctlError becomes one line and its exit code."""
    _standard_streams()
    refusal = _not_linux()
    if refusal:
        _fail(refusal, 2)
    from procctl.errors import ProcctlError

    try:
        if sys.argv[1:] == ["--version"]:
            # What the app's --version prints, without loading the app (~100 ms).
            from procctl import __version__

            sys.stdout.write(f"procctl {__version__}\n")
        elif (code := _quick(sys.argv[1:])) is not None:
            _ending()
            sys.exit(code)
        else:
            from procctl.cli import app
            from procctl.cli.legacy import rewrite

            args, warnings = rewrite(sys.argv[1:])
            for warning in warnings:
                sys.stderr.write(f"procctl: warning: {warning}\n")
            code = app(args=args, prog_name="procctl", standalone_mode=False)
            _ending()
            sys.exit(code if isinstance(code, int) else 0)
    except ProcctlError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        # Our stdout was closed early (`procctl ... | head`): not an error of ours.
        _stdout_to_null()
        sys.exit(0)
    except OSError as exc:
        if not _refused_write(exc):
            raise
        # (What is left in stdout's buffer would fail again at exit.)
        _stdout_to_null()
        _fail(f"cannot write its output: {exc.strerror}", 1)
    except Exception as exc:
        usage = _click_error(exc, sys.argv[1:])
        if usage is None:
            raise
        _fail(*usage)
    sys.exit(0)


def _refused_write(exc: OSError) -> bool:
    """A write to a stream that takes no more: stdout on a full disk (or
    /dev/full), past a quota or a file size limit, or on a failing device.
    (Files procctl opens itself name themselves in their errors.)"""
    return exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _stdout_to_null() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _ending() -> None:
    """The command is done and the process ends with it. What it made is
    left to the end of the process, not to the collector: the interpreter's
    collections at exit walk every object still held (~15 ms after a run of
    2,000 jobs, a quarter of its time from the last job's end to its exit).
    Every file of the command is closed by now; the standard streams are
    flushed at exit as always."""
    import gc

    gc.freeze()


def _click_error(exc: Exception, argv: list[str]) -> tuple[str, int] | None:
    """A command-line parser's error (an unknown option, a missing or bad
    value) as procctl's own errors read: one line and the same exit code.
    None for anything else."""
    import typer

    click_error = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
    if not isinstance(exc, click_error):
        if type(exc).__name__ == "Abort":  # end of input at a prompt
            return "aborted", 1
        return None
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `procctl`: the help, as before
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    message = message[:1].lower() + message[1:].rstrip(".")
    if ctx is not None:
        command = ctx.command_path.removeprefix("procctl").strip()
    else:  # the parser's own errors (an option without its value) carry no context
        command = argv[0] if argv and not argv[0].startswith("-") else ""
    where = f"{command}: " if command else ""
    return f"{where}{message} (see '{' '.join(['procctl', command]).strip()} -h')", exc.exit_code  # type: ignore[attr-defined]


def _interrupted() -> NoReturn:
    """Ctrl-C: one line and 130, however early it came. The process ends at
    once: CPython 3.11, after a KeyboardInterrupt taken just as code made
    from a string starts (dataclasses and named tuples make such code while
    a module loads), ends its own process by SIGINT once the program is
    done, even though the interrupt was caught here. By now every `with` and
    `finally` of the command has run."""
    from procctl.errors import INTERRUPTED_EXIT

    sys.stderr.write("procctl: interrupted\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(INTERRUPTED_EXIT)


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"procctl: {message}\n")
    sys.stderr.flush()
    sys.exit(code)

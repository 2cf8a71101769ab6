"""Starting a child: the fork and exec, with what `subprocess.Popen` does
around them and nothing more.

`Popen` spends most of its time in Python: it encodes the whole environment
again for every child (95 variables on a usual machine: about 40 µs), looks
the command up on PATH with a fresh `os.get_exec_path`, and builds an object
procctl never uses (it reaps its children itself). A spawner thread holds the
interpreter lock for all of that, and the event loop waits for it. `spawn`
calls CPython's own fork-and-exec (`_posixsubprocess.fork_exec`, which
`Popen` calls, with vfork where it can) with each variable encoded once
per run and each PATH looked at once, and reports a failed exec as `Popen`
does, so that the errors read the same. Where the interpreter is not one it
was written against, `Popen` itself does it.
"""

from __future__ import annotations

import builtins
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

try:
    from _posixsubprocess import fork_exec as _fork_exec
except ImportError:  # (not CPython)
    _fork_exec = None

DIRECT = _fork_exec is not None and sys.version_info[:2] == (3, 11)
"""`fork_exec`'s arguments are those of CPython 3.11; elsewhere `Popen` is used."""

VFORK = DIRECT and sys.platform == "linux"
"""CPython 3.11 on Linux vforks a child that has no pre-exec step (and no
change of user or groups, which procctl never asks): the parent goes on only
once the child has exec'd or exited."""

_ENCODED_MAX = 4096
"""Variables (name and value) kept encoded, at most: a manifest of
thousands of distinct values must not make this grow without end."""

_encoded: dict[str, tuple[str, bytes]] = {}
"""name → (value, b"name=value"), for the value last seen."""
_exec_paths: dict[str | None, tuple[bytes, ...]] = {}
"""PATH → its directories, encoded."""


def _environment(env: Mapping[str, str]) -> list[bytes]:
    found = []
    for name, value in env.items():
        known = _encoded.get(name)
        if known is not None and known[0] is value:
            found.append(known[1])
            continue
        key = os.fsencode(name)
        if b"=" in key:
            raise ValueError("illegal environment variable name")
        pair = key + b"=" + os.fsencode(value)
        if len(_encoded) >= _ENCODED_MAX:
            _encoded.clear()
        _encoded[name] = (value, pair)
        found.append(pair)
    return found


def _executables(program: str, env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Where `program` may be: itself if it names a directory, else each
    directory of the child's PATH (as `Popen` and `os.execvpe` look)."""
    executable = os.fsencode(program)
    if os.path.dirname(executable):
        return (executable,)
    path = env.get("PATH")
    dirs = _exec_paths.get(path)
    if dirs is None:
        dirs = tuple(os.fsencode(entry) for entry in os.get_exec_path({"PATH": path} if path is not None else {}))
        if len(_exec_paths) >= 64:
            _exec_paths.clear()
        _exec_paths[path] = dirs
    return tuple(os.path.join(entry, executable) for entry in dirs)


def spawn(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
    pass_fds: tuple[int, ...] = (),
    preexec_fn: Callable[[], None] | None = None,
    keep_error_pipe: bool = True,
) -> int:
    """Start `argv` in a session of its own with these descriptors as its
    0, 1 and 2 (`subprocess.DEVNULL` for /dev/null) and every other closed
    but `pass_fds`; its pid. Raises what `Popen` raises when it cannot: an
    OSError (the file and errno of the failed exec, or of the chdir),
    `subprocess.SubprocessError` (`preexec_fn` failed), ValueError."""
    if not DIRECT:
        return _by_popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds, preexec_fn=preexec_fn)
    env_list = _environment(env)
    executables = _executables(argv[0], env)
    null = -1
    if subprocess.DEVNULL in (stdin, stdout, stderr):
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        stdin, stdout, stderr = (null if fd == subprocess.DEVNULL else fd for fd in (stdin, stdout, stderr))
    # The child reports a failed exec on this pipe ("name:hex errno:text"), as Popen's does.
    # Without a pre-exec step the child is vforked: its report, if any, is in
    # the pipe by the time fork_exec returns, and one of the kept pipes serves.
    # (`keep_error_pipe` False: a caller with a table of descriptors of its
    # own, where the kept pipes' numbers mean nothing.)
    kept = keep_error_pipe and preexec_fn is None and VFORK
    err_read, err_write = _kept_pipes.take() if kept else _error_pipe(0)
    try:
        try:
            pid = _fork_exec(
                argv, executables, True, tuple(sorted({*pass_fds, err_write})), cwd, env_list,
                stdin, -1, -1, stdout, -1, stderr, err_read, err_write,
                True, True, -1, None, None, None, -1, preexec_fn, True,
            )  # fmt: skip
        finally:
            if not kept:
                os.close(err_write)
            if null >= 0:
                os.close(null)
        report = _read_report(err_read)
    finally:
        if kept:
            _kept_pipes.give_back(err_read, err_write)
        else:
            os.close(err_read)
    if report:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise _failure(report, argv[0], cwd)
    return pid


def _error_pipe(flags: int) -> tuple[int, int]:
    """A close-on-exec pipe whose write end is none of a child's 0, 1 and 2
    (where procctl's own are closed)."""
    err_read, err_write = os.pipe2(os.O_CLOEXEC | flags)
    if err_write < 3:
        low, err_write = err_write, os.dup(err_write)
        while err_write < 3:
            err_write = os.dup(err_write)
        os.close(low)
    return err_read, err_write


def _read_report(err_read: int) -> bytes:
    """What a child wrote on its error pipe: until the end (a pipe of its
    own) or until nothing more is there (a kept one, non-blocking)."""
    report = bytearray()
    while len(report) <= 50_000:
        try:
            part = os.read(err_read, 50_000)
        except BlockingIOError:
            break
        if not part:
            break
        report += part
    return bytes(report)


class _KeptPipes:
    """Error pipes kept between vforked spawns. A pipe of its own for each
    spawn is four system calls more (made, and both ends closed), and on a
    spawner thread each system call may hand the interpreter lock to the
    loop and wait to get it back (docs/profiling.md, spawn, ninth round).
    A spawn takes one and gives it back: there are never more than the
    spawns under way at once, and no more than `KEPT_MAX` stay."""

    KEPT_MAX = 16

    def __init__(self) -> None:
        self._free: list[tuple[int, int]] = []

    def take(self) -> tuple[int, int]:
        try:
            return self._free.pop()  # (atomic: any thread)
        except IndexError:
            return _error_pipe(os.O_NONBLOCK)

    def give_back(self, err_read: int, err_write: int) -> None:
        if len(self._free) < self.KEPT_MAX:
            self._free.append((err_read, err_write))
        else:
            os.close(err_read)
            os.close(err_write)

    def forget_in_child(self) -> None:
        """After a fork: the pipes are the parent's, shared; a child that goes
        on spawning makes its own."""
        free, self._free = self._free, []
        for err_read, err_write in free:
            os.close(err_read)
            os.close(err_write)


_kept_pipes = _KeptPipes()
os.register_at_fork(after_in_child=_kept_pipes.forget_in_child)


def _failure(report: bytes, program: str, cwd: str) -> Exception:
    """The exception a failed exec reported, as `Popen` raises it."""
    try:
        name, hex_errno, text = report.split(b":", 2)
        message = text.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {report!r}")
    kind = getattr(builtins, name.decode("ascii", "replace"), subprocess.SubprocessError)
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        kind = subprocess.SubprocessError
    if issubclass(kind, OSError) and hex_errno:
        number = int(hex_errno, 16)
        # "noexec": the chdir (or another step before the exec) failed.
        filename = cwd if message == "noexec" else program
        return kind(number, os.strerror(number) if number else ("" if message == "noexec" else message), filename)
    return kind(message)


_held: dict[int, subprocess.Popen[bytes]] = {}
"""Children started by `Popen` (not DIRECT), by pid: held so that the
subprocess module never reaps them itself (`forget` lets go)."""


def _by_popen(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdin: int, stdout: int, stderr: int, pass_fds: tuple[int, ...], preexec_fn: Callable[[], None] | None) -> int:
    popen = subprocess.Popen(
        list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=dict(env), start_new_session=True, preexec_fn=preexec_fn, pass_fds=pass_fds
    )
    _held[popen.pid] = popen
    return popen.pid


def forget(pid: int, returncode: int) -> None:
    """The caller has reaped `pid`: a `Popen` of it must not wait for it again."""
    popen = _held.pop(pid, None)
    if popen is not None:
        popen.returncode = returncode


def kill_and_reap(pid: int) -> None:
    """SIGKILL `pid`'s group and reap it (a start nobody awaits any more)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    forget(pid, os.waitstatus_to_exitcode(status))

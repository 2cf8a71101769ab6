"""`tty = true`: a child on a pseudo-terminal of its own, as overmind runs
each process, so that programs that colour or line-buffer only on a
terminal do so.

The child's stdin, stdout and stderr are the terminal's slave side (its
controlling terminal, in its own session); procctl reads and writes the
master side. The line discipline is set so that the bytes the child writes
reach procctl as written (no `\\n` → `\\r\\n`) and what `procctl send` writes
is not echoed back into its output. The window size is procctl's own
terminal's (80×24 without one) and follows it: on SIGWINCH every child
terminal takes the new size, and the kernel tells each child (SIGWINCH).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Callable
from typing import Any

DEFAULT_SIZE = (24, 80)
"""Rows and columns when procctl itself has no terminal (`up -d`, CI)."""


def own_size() -> tuple[int, int]:
    """(rows, columns) of procctl's terminal: stdout's, else stderr's or stdin's."""
    for fd in (1, 2, 0):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines and size.columns:
            return size.lines, size.columns
    return DEFAULT_SIZE


def _set_size(fd: int, size: tuple[int, int]) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def take_terminal() -> None:
    """In the child, after `setsid`: the terminal on its stdin becomes its
    controlling terminal (job control, SIGWINCH, /dev/tty)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminals:
    """The pseudo-terminals of a run's children, at procctl's terminal's size."""

    def __init__(self, size: Callable[[], tuple[int, int]] = own_size) -> None:
        self._size = size
        self._masters: set[int] = set()
        """A descriptor of each open terminal's master side, for resizing."""
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> tuple[int, int]:
        """A new terminal: (master, slave). The master is ours (close it with
        `release`); the slave is the child's stdin, stdout and stderr."""
        master, slave = os.openpty()
        try:
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.OPOST  # oflag: the bytes as written
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)  # lflag: input is not output
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            _set_size(master, self._size())
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._masters.add(master)
        self._follow()
        return master, slave

    def release(self, master: int) -> None:
        """Close a terminal's master side (once: `close` may have been first)."""
        if master in self._masters:
            self._masters.discard(master)
            os.close(master)

    def _follow(self) -> None:
        """Take SIGWINCH (once), passing it on to whoever had it (the view)."""
        if self._loop is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
            self._previous = signal.signal(signal.SIGWINCH, self._on_winch)
        except (RuntimeError, ValueError):
            self._loop = None  # No loop, or not the main thread: sizes stay as set.

    def _on_winch(self, signum: int, frame: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.resize)
        previous = self._previous
        if callable(previous):
            previous(signum, frame)

    def resize(self) -> None:
        """Every terminal takes procctl's terminal's size now."""
        size = self._size()
        for master in list(self._masters):
            try:
                _set_size(master, size)
            except OSError:
                pass

    def close(self) -> None:
        if self._loop is not None and signal.getsignal(signal.SIGWINCH) == self._on_winch:
            signal.signal(signal.SIGWINCH, self._previous if self._previous is not None else signal.SIG_DFL)
        self._loop = None
        for master in list(self._masters):
            self.release(master)

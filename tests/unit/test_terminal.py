"""A child's pseudo-terminal: its line discipline passes bytes as written,
its size is the one given, and it is closed once however it ends."""

from __future__ import annotations

import os
import termios

from procctl.engine.terminal import Terminals


def test_a_terminal_passes_bytes_as_written_at_the_size_given() -> None:
    terminals = Terminals(size=lambda: (33, 111))
    master, slave = terminals.open()
    try:
        attrs = termios.tcgetattr(slave)
        assert not attrs[1] & termios.OPOST and not attrs[3] & termios.ECHO
        assert os.get_terminal_size(slave) == os.terminal_size((111, 33))
        os.write(slave, b"a\nb\x1b[1m\n")
        assert os.read(master, 100) == b"a\nb\x1b[1m\n"
    finally:
        os.close(slave)
    terminals.close()
    terminals.release(master)  # After close: closed already, never twice (no EBADF).

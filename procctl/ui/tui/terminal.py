"""The terminal as the view's driver writes to it, surviving its end.

When the terminal closes (a window shut, an ssh session dropped) every write
to it fails with EIO. Textual's writer thread would die on the first such
write, and the view's own shutdown would then wait for ever on the writes
queued behind it: the run would never end. Here the first failed write ends
the writing instead; what follows goes nowhere, and SIGHUP, which the kernel
sends with the hangup, stops the run gracefully.
"""

from __future__ import annotations

from typing import IO, Any

from textual.driver import Driver


class GoneTerminal:
    """A text stream that stops writing, without an error, once a write fails."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._file.write(text)
            except (OSError, ValueError):
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def surviving(driver_class: type[Driver]) -> type[Driver]:
    """`driver_class`, writing through a `GoneTerminal` when it writes to a
    file of its own (the Linux driver); any other driver as it is."""
    from textual.drivers.linux_driver import LinuxDriver

    if not issubclass(driver_class, LinuxDriver):
        return driver_class

    class SurvivingDriver(driver_class):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._file = GoneTerminal(self._file)

    return SurvivingDriver

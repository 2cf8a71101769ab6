"""psutil, imported when first used.

Importing psutil costs about 7 ms, and every module of the engine that uses
it is imported by `procctl run` before its first child starts; most runs
first touch psutil later (the first metrics sample, a stop, a limit). So the
engine's modules take `psutil` from here: a stand-in module that imports the
real one at its first attribute looked up, and from then on holds the same
attributes (later lookups are plain ones). Two threads that look it up first
at once both import psutil through the import system's lock: one module.
"""

from __future__ import annotations

from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    import psutil as psutil


class _Lazy(ModuleType):
    def __getattr__(self, name: str) -> object:
        import psutil as module

        self.__dict__.update(module.__dict__)
        return getattr(module, name)


if not TYPE_CHECKING:
    psutil = _Lazy("psutil")

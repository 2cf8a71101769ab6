"""The command line. `app` is the Typer app with every command registered on
it, loaded when first asked for: the quick forms (`procctl.cli.quick`) and
the modules they use import this package without paying for Typer."""

from __future__ import annotations

import sys
import types


class _Package(types.ModuleType):
    @property
    def app(self) -> object:
        # Importing each command module registers its commands on the app.
        from procctl.cli import bench, cluster, control, detach, export, files, history, logs, oneoff, run, shm, top  # noqa: F401
        from procctl.cli import completion  # noqa: F401  (the help lists it last)

        return sys.modules["procctl.cli.app"].app

    @app.setter
    def app(self, module: object) -> None:
        """The import system binds the submodule `app` here once it has
        loaded: `procctl.cli.app` stays the Typer app, as it always was."""


sys.modules[__name__].__class__ = _Package

__all__ = ["app"]

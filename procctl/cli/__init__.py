"""The command line. Importing this package registers every command on `app`."""

from procctl.cli import run, control, logs, detach, files, history, bench, export, top, shm, oneoff, cluster  # noqa: F401  (registers the commands)
from procctl.cli.app import app

__all__ = ["app"]

"""What went wrong on a Dask cluster, said in one line: an exception Dask
handed back, a module the workers cannot import, a task that failed before
its job started."""

from __future__ import annotations

import re

from procctl import __version__


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no reason given"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def missing_module(exc: BaseException) -> str | None:
    """The module a worker could not import: from an ImportError, or from
    the text of the plain Exception Dask hands back when the worker failed
    to load the function it was sent."""
    if isinstance(exc, ImportError):
        return exc.name or str(exc)
    match = re.search(r"No module named '([^']+)'", str(exc))
    return match[1] if match else None


def import_problem(missing: str, exc: BaseException, address: str) -> str:
    if missing == "procctl" or missing.startswith("procctl."):
        return (
            f"the Dask workers of {address} cannot import procctl (No module named {missing!r}): "
            f"install it where they run: pip install 'procctl[dask]=={__version__}'"
        )
    return f"the Dask workers of {address} cannot import {missing!r}, which procctl needs there: {describe(exc)}"


def task_error(exc: BaseException | None, address: str) -> str:
    missing = missing_module(exc) if exc is not None else None
    if exc is not None and missing is not None:
        return import_problem(missing, exc, address)
    return f"its task failed on the cluster before the job started: {describe(exc)}"

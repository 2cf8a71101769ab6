"""Picking processes from a manifest by name (`procctl run web worker`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from procctl.config.manifest import Manifest
from procctl.errors import UsageError


def select_processes(manifest: Manifest, names: Iterable[str], *, with_dependencies: bool = True) -> Manifest:
    """The manifest reduced to `names` and (unless told otherwise) everything
    they depend on. Raises UsageError for an unknown name, listing the known."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return manifest
    unknown = [name for name in wanted if name not in manifest.processes]
    if unknown:
        known = ", ".join(manifest.processes)
        raise UsageError(f"unknown process {unknown[0]!r}; the manifest has: {known}")
    keep: set[str] = set()
    stack = list(wanted)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        if with_dependencies:
            stack.extend(manifest.processes[name].depends_on)
    processes = {}
    for name, spec in manifest.processes.items():
        if name not in keep:
            continue
        if not with_dependencies:
            spec = dataclasses.replace(spec, depends_on={d: c for d, c in spec.depends_on.items() if d in keep})
        processes[name] = spec
    return dataclasses.replace(manifest, processes=processes)

"""Picking processes from a manifest by name (`procctl run web worker`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from procctl.config.manifest import Manifest
from procctl.errors import UsageError


def select_processes(
    manifest: Manifest,
    names: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    with_dependencies: bool = True,
) -> Manifest:
    """The manifest reduced to `names` (all processes when none are given)
    and, unless `with_dependencies` is false, everything they depend on;
    then without `exclude`, which wins over a dependency (the user said so:
    the dependent starts without waiting for it). A dependency on a process
    that is left out is dropped. Raises UsageError for an unknown name,
    listing the known, and when nothing is left to run."""
    wanted = list(dict.fromkeys(names))
    unwanted = set(exclude)
    unknown = [name for name in [*wanted, *unwanted] if name not in manifest.processes]
    if unknown:
        known = ", ".join(manifest.processes)
        raise UsageError(f"unknown process {unknown[0]!r}; the manifest has: {known}")
    if not wanted and not unwanted:
        return manifest
    keep: set[str] = set()
    stack = wanted or list(manifest.processes)
    while stack:
        name = stack.pop()
        if name in keep or name in unwanted:
            continue
        keep.add(name)
        if with_dependencies:
            stack.extend(manifest.processes[name].depends_on)
    if not keep:
        raise UsageError("nothing left to run: every process was left out")
    processes = {}
    for name, spec in manifest.processes.items():
        if name not in keep:
            continue
        if any(d not in keep for d in spec.depends_on):
            spec = dataclasses.replace(spec, depends_on={d: c for d, c in spec.depends_on.items() if d in keep})
        processes[name] = spec
    return dataclasses.replace(manifest, processes=processes)

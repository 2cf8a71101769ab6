"""Names on a command line or in a request → what they name: the one
resolver of process and instance names, and picking processes from a
manifest (`procctl run web worker`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from procctl.config.manifest import Manifest
from procctl.errors import UsageError

T = TypeVar("T")


def resolve(names: Iterable[str], processes: Mapping[str, Sequence[T]], instances: Mapping[str, T] | None = None) -> list[T]:
    """What `names` name, each thing once, in order: a process name stands
    for all of `processes[name]`; where `instances` is given, an instance
    name (`web.2`, `thumb[7]`) for that one. A name that is neither is a
    UsageError listing the processes."""
    found: dict[int, T] = {}  # by id: linear in names and matches
    for name in names:
        if name in processes:
            matches: Sequence[T] = processes[name]
        elif instances is not None and name in instances:
            matches = (instances[name],)
        else:
            raise unknown_name(name, processes, instances)
        for match in matches:
            found.setdefault(id(match), match)
    return list(found.values())


def unknown_name(name: str, processes: Iterable[str], instances: Iterable[str] | None = None) -> UsageError:
    """The error for a name that names nothing: the known processes, and the
    nearest process or instance name when one is close."""
    from procctl.config.reading import nearest

    processes = list(processes)
    what = "process" if instances is None else "process or instance"
    close = nearest(name, processes) or (nearest(name, instances) if instances is not None else None)
    hint = f" (did you mean {close!r}?)" if close else ""
    return UsageError(f"unknown {what} {name!r}{hint}; known processes: {', '.join(processes)}")


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
    every = {name: (name,) for name in manifest.processes}
    wanted = resolve(names, every)
    unwanted = set(resolve(exclude, every))
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
            spec = spec._replace(depends_on={d: c for d, c in spec.depends_on.items() if d in keep})
        processes[name] = spec
    return manifest._replace(processes=processes)


def allow_to_die(manifest: Manifest, names: Iterable[str], *, everything: bool = False) -> Manifest:
    """The manifest with `exit_on_end` off for `names` (or for every process):
    those may end without stopping the rest (overmind's --can-die and
    --any-can-die). An unknown name is a UsageError listing the known."""
    chosen = set(manifest.processes) if everything else set(names)
    unknown = sorted(chosen - set(manifest.processes))
    if unknown:
        raise UsageError(f"--can-die: {unknown_name(unknown[0], manifest.processes)}")
    processes = {
        name: spec._replace(exit_on_end=False) if name in chosen and spec.exit_on_end else spec
        for name, spec in manifest.processes.items()
    }
    return manifest._replace(processes=processes)

"""`[shared.NAME]` regions and each process's `shared = [...]` list.

Everything a manifest can set here is bounded: at most `MAX_REGIONS`
regions, whose sizes add up to no more than this machine's memory, and
names that make distinct environment variables (`PROCCTL_SHM_<NAME>`,
`..._SIZE`, `..._MODE`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from procctl.config.manifest import RegionMode, SharedRegion

if TYPE_CHECKING:
    from procctl.config.reading import Reader

MAX_REGIONS = 64
REGION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
REGION_KEYS = ("size",)
MODES: tuple[RegionMode, ...] = ("rw", "ro")
_DERIVED = ("_SIZE", "_MODE")
"""Suffixes of the variables that come with a region's own."""


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def regions(reader: Reader, raw: object) -> dict[str, SharedRegion]:
    table = reader.table(raw, "shared")
    if len(table) > MAX_REGIONS:
        raise reader.error(f"at most {MAX_REGIONS} shared regions, got {len(table)}", "shared")
    found: dict[str, SharedRegion] = {}
    env_names: dict[str, str] = {}
    total = 0
    ram = physical_memory()
    for name, spec in table.items():
        path = ("shared", name)
        if not REGION_NAME.match(name):
            raise reader.error("a region name is a letter, then letters, digits and '_' (at most 32)", *path)
        upper = name.upper()
        if upper in env_names:
            raise reader.error(f"the same variable PROCCTL_SHM_{upper} as region {env_names[upper]!r}", *path)
        env_names[upper] = name
        body = reader.table(spec, *path)
        reader.check_keys(body, REGION_KEYS, *path)
        if "size" not in body:
            raise reader.error('missing key: size (e.g. size = "64MiB")', *path)
        size = reader.size(body["size"], (*path, "size"))
        if size < 1:
            raise reader.error("a region holds at least one byte", *path, "size")
        total += size
        if total > ram:
            raise reader.error(f"the shared regions add up to more than this machine's memory ({ram} bytes)", *path, "size")
        found[name] = SharedRegion(name, size, reader.lines.line(*path))
    for upper, name in env_names.items():
        for suffix in _DERIVED:
            if upper.endswith(suffix) and upper.removesuffix(suffix) in env_names:
                other = env_names[upper.removesuffix(suffix)]
                raise reader.error(f"PROCCTL_SHM_{upper} is also the {suffix[1:].lower()} variable of region {other!r}: rename one", "shared", name)
    return found


def uses(reader: Reader, raw: object, process: str, known: Mapping[str, SharedRegion]) -> tuple[tuple[str, RegionMode], ...]:
    """`shared = ["table", "scratch:ro"]`: each region by name, `:rw` (the
    default) or `:ro`."""
    path = ("process", process, "shared")
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise reader.error('expected a list of region names, e.g. ["table", "scratch:ro"]', *path)
    chosen: dict[str, RegionMode] = {}
    for item in raw:
        name, sep, mode = item.partition(":")
        if sep and mode not in MODES:
            raise reader.error(f"{item!r}: the mode after ':' is rw or ro", *path)
        if name not in known:
            import difflib  # only for a misspelt name

            hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            where = "no [shared] regions are declared" if not known else f"declared: {', '.join(known)}"
            raise reader.error(f"unknown shared region {name!r} ({where})", *path, suggestion=hint[0] if hint else None)
        if name in chosen:
            raise reader.error(f"region {name!r} is listed twice", *path)
        chosen[name] = mode if sep else "rw"  # type: ignore[assignment]
    return tuple(chosen.items())


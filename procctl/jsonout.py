"""The JSON procctl prints for `--json` (and `benchmark --export-json`): an
object, never a bare list, with a `version` first. The version counts
changes of layout that could break a reader (a key renamed or removed, a
meaning changed); new keys do not change it. Each command's layout is a
JSON Schema in docs/schemas/, which the tests validate real output against."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

VERSION = 1


def versioned(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": VERSION, **payload}


def dumps(payload: Mapping[str, Any]) -> str:
    """`payload` as printed: the version first, indented, one newline at the end."""
    return json.dumps(versioned(payload), indent=2) + "\n"

"""`{item}` through the real binary: hostile `each` items in every place a
string command can hold them run as data, byte for byte, and never as a
command; `check` refuses the places no quoting makes safe."""

from __future__ import annotations

import tomli_w
from conftest import Project

CONTEXTS = {
    "bare": ("printf '%s' {item}", "{}"),
    "dq": ('printf \'%s\' "file: {item}"', "file: {}"),
    "sq": ("printf '%s' 'file: {item}'", "file: {}"),
    "nested": ("sh -c 'printf \"%s\" {item}.png'", "{}.png"),
    "dqnested": ("bash -c \"printf '%s' '<{item}>'\"", "<{}>"),
    "dash": ("printf '%s' -- {item}", "--{}"),
}


def test_hostile_items_run_as_data_in_every_context(project: Project) -> None:
    """1. Six processes, one per place {item} can stand, each over hostile items.
    2. `procctl run` ends well, no marker file appears, every log holds its item exactly."""
    marker = project.root / "PWNED"
    items = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"x; touch {marker}",
        f"x && touch {marker}",
        f"x\ntouch {marker}",
        f"\"'; touch {marker}; '\"",
        "two  spaces",
        "-rf",
        "*",
        "back\\slash",
    ]
    manifest = {"settings": {"max_parallel": 8}, "process": {name: {"cmd": cmd, "each": items} for name, (cmd, _) in CONTEXTS.items()}}
    project.manifest.write_text(tomli_w.dumps(manifest))
    result = project.run("run", "--plain", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists()
    for name, (_, shape) in CONTEXTS.items():
        for index, item in enumerate(items, start=1):
            log = project.logs / f"{name}.{index}.log"
            assert log.read_bytes() == shape.format(item).encode(), (name, item)


def test_check_refuses_what_cannot_be_quoted(project: Project) -> None:
    project.write("""
        [process.ok]
        cmd = "echo {item}"
        each = ["a"]

        [process.thumb]
        cmd = "convert `basename {item}` out.png"
        each = ["a.jpg"]
    """)
    for args in (("check",), ("run", "--plain")):
        result = project.run(*args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert lines[0].startswith("procctl: procfile.toml:7: process.thumb.cmd: {item} in backticks cannot be quoted safely; write $(…) instead"), lines[0]
    assert not (project.root / ".procctl" / "logs").exists()

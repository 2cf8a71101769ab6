"""The command lines answered without loading the Typer app: the usual forms
of `check`, `run` and `status --json`. The app (typer, its click, rich and
every command module) costs several times what these commands need to
start, and they are what scripts, CI steps and people run most.

A command line is taken here only when every word of it is in the table
below, in a shape the app's parser surely reads the same way: an option and
its value as two words (or `--option=value`), a value that does not start
with '-', each option at most once, names anywhere (all after `--`).
Anything else — help, a typo, an option not listed, `-j4` — goes to the app
unchanged, so that its help, its errors and their exit codes stay its own.
Both paths call the same functions (`planning.check`, `running.run`), and
the app declares these options with the flags named here (a test compares
the two).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing is for the type checker only on this path)
    from typing import Any

FILE = ("--file", "-f")
PARALLEL = ("--parallel", "-j")
SCHEDULE = ("--schedule",)
TIMEOUT = ("--timeout",)
JSON = ("--json",)
PLAIN = ("--plain",)
KEEP_GOING = ("--keep-going",)
NO_WATCH = ("--no-watch",)


class Form:
    """A command's quick form: its options that take a value and its
    switches, each as parameter → flags (the parameter of the command's
    function), whether it takes names, and the switch it cannot go without."""

    def __init__(self, values: dict[str, tuple[str, ...]], switches: dict[str, tuple[str, ...]], *, names: str | None = None, needs: str | None = None) -> None:
        self.values = values
        self.switches = switches
        self.names = names
        self.needs = needs
        self.value_of = {flag: param for param, flags in values.items() for flag in flags}
        self.switch_of = {flag: param for param, flags in switches.items() for flag in flags}


FORMS = {
    "check": Form({"file": FILE, "parallel": PARALLEL, "schedule": SCHEDULE}, {"as_json": JSON}),
    "run": Form(
        {"file": FILE, "parallel": PARALLEL, "schedule": SCHEDULE, "timeout": TIMEOUT},
        {"plain_output": PLAIN, "keep_going": KEEP_GOING, "no_watch": NO_WATCH, "json_summary": JSON},
        names="names",
    ),
    "status": Form({"file": FILE}, {"as_json": JSON}, needs="as_json"),
}


def parse(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(command, its parameters) when `argv` is a quick form, else None."""
    if not argv or argv[0] not in FORMS or "_PROCCTL_COMPLETE" in os.environ:
        return None
    form = FORMS[argv[0]]
    params: dict[str, Any] = {}
    names: list[str] = []
    words = argv[1:]
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" and form.names:
            names.extend(words[i:])
            break
        if not word.startswith("-"):
            if not form.names:
                return None
            names.append(word)
            continue
        flag, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if flag in form.switch_of and not eq:
            param, given = form.switch_of[flag], True
        elif flag in form.value_of:
            param = form.value_of[flag]
            if not eq:
                if i >= len(words):
                    return None
                value = words[i]
                i += 1
            if not value or value.startswith("-"):
                return None
            given = value
        else:
            return None
        if param in params:
            return None
        params[param] = given
    if form.needs and form.needs not in params:
        return None
    if names and form.names:
        params[form.names] = names
    return argv[0], params


def answer(argv: list[str]) -> int | None:
    """Run `argv` when it is a quick form and return its exit code; None
    when the app is to answer it."""
    parsed = parse(argv)
    if parsed is None:
        return None
    command, params = parsed
    if command == "status":
        from procctl.control.client import call
        from procctl.jsonout import dumps

        sys.stdout.write(dumps(call(params.get("file"), "status", timeout_s=30.0)))
        return 0
    if "file" in params:
        from pathlib import Path

        params["file"] = Path(params["file"])
    if command == "check":
        from procctl.cli.planning import check

        check(**params)
        return 0
    from procctl.cli.running import run

    return run(**params)

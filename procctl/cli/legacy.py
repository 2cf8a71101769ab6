"""Other spellings of the command line: old ones, still understood for a
while, each with a warning on stderr saying what to write instead, and
Typer's completion options, which are the `completion` command's.

`-f` names the manifest in every command; `logs -f` used to mean follow
(now `-F`, `--follow`). A `logs -f` that is not followed by something that
can be a manifest is read the old way: a script that follows logs keeps
working, and says what to change. Rewriting the words before the parser
sees them keeps the old spelling out of the commands and their help.
"""

from __future__ import annotations

import os

_LOGS_VALUE_OPTIONS = frozenset({"-n", "--lines", "--since", "--run", "--file", "-f"})


def _can_be_manifest(word: str) -> bool:
    return os.path.isfile(word) or word.endswith(".toml") or os.path.basename(word) == "Procfile" or os.sep in word


_COMPLETION_OPTIONS = {"--show-completion": [], "--install-completion": ["--install"]}
"""Typer's spellings of `procctl completion [SHELL] [--install]`, kept
without a warning: its users know them, and the README showed one."""


def rewrite(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the command line to parse, warnings for the old spellings in it)."""
    if argv and argv[0] in _COMPLETION_OPTIONS:
        return ["completion", *_COMPLETION_OPTIONS[argv[0]], *argv[1:]], []
    if not argv or argv[0] != "logs":
        return argv, []
    words = list(argv)
    warnings: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word == "--":
            break
        if word == "-f":
            following = words[i + 1] if i + 1 < len(words) else None
            if following is None or following.startswith("-") or not _can_be_manifest(following):
                words[i] = "--follow"
                warnings.append("'logs -f' to follow is deprecated: -f names the manifest in every command; follow with -F (--follow)")
                i += 1
                continue
        if word in _LOGS_VALUE_OPTIONS:
            i += 1
        i += 1
    return words, warnings

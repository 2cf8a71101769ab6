"""How a manifest's command becomes the argv that is exec'd: a list as it is,
a string through /bin/sh -c.

A string that is one simple command (`python app.py --port $PORT`) runs as
`exec python app.py --port $PORT`: dash, Debian's /bin/sh, forks it instead
of replacing itself, so the shell would lead the group, die of the stop
signal at once and hand procctl its own death (143) instead of the program's
exit code. With `exec` the program is the leader, as when foreman or Ruby's
spawn run a line without shell syntax directly. Anything else (a pipe, a
list, a redirection, a subshell, a builtin the shell must run itself) is
left as written for the shell.
"""

from __future__ import annotations

import functools
import re

from procctl.config.shell_lex import lex

SHELL = "/bin/sh"

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_ONLY = frozenset(
    # Reserved words, and builtins with no program of the same name to exec.
    "! { } [[ ]] case do done elif else esac fi for function if in select then until while "
    ". : alias bg break builtin cd command continue eval exec exit export fg getopts hash jobs "
    "local read readonly return set shift source times trap type typeset ulimit umask unalias unset wait".split()
)


def argv_of(cmd: str | tuple[str, ...]) -> tuple[str, ...]:
    """The argv that runs `cmd`."""
    if isinstance(cmd, str):
        return (SHELL, "-c", shell_script(cmd))
    return tuple(cmd)


@functools.lru_cache(maxsize=1024)
def shell_script(cmd: str) -> str:
    """`cmd` with `exec` before its command word when it is one simple
    command; otherwise `cmd` unchanged."""
    script, regions = lex(cmd)
    if len(script.commands) != 1 or any(region.reason for region in regions):
        return cmd
    words = script.commands[0]
    end = min((region.start for region in regions), default=len(cmd))
    # Between the words only blanks: no operator, redirection or parenthesis
    # the word list does not show (the lexer drops them).
    cuts = [0, *(edge for word in words for edge in (word.start, word.end)), end]
    if any(cmd[a:b].strip(" \t") for a, b in zip(cuts[::2], cuts[1::2], strict=True)):
        return cmd
    at = 0
    while at < len(words) and words[at].value is not None and _ASSIGNMENT.match(words[at].value or ""):
        at += 1
    if at == len(words) or words[at].value is None or words[at].value in _SHELL_ONLY:
        return cmd
    start = words[at].start
    return f"{cmd[:start]}exec {cmd[start:]}"

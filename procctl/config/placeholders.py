"""`{item}`, `{index}` and `{port}` in a command. Pure.

`{index}` and `{port}` are numbers procctl makes: they go in as they are.
`{item}` is an input — a file name, a line of a list — and must never become
a command, wherever it stands. A list command is exec'd as is: the item is
one argument, byte for byte. A string command runs through /bin/sh, so
procctl reads it as the shell will (`shell_lex`) and quotes the item for the
place it stands in:

| where `{item}` stands | what goes in |
| --- | --- |
| an unquoted word: `convert {item} {item}.png` | `'…'`, a `'` as `'\\''` |
| inside double quotes: `echo "file: {item}"` | a `\\` before each `$` `` ` `` `"` `\\` |
| inside single quotes: `echo 'file: {item}'` | a `'` as `'\\''`, the rest as is |
| the script of a shell: `sh -c 'echo {item}'`, `bash -c "…"` (also after env, sudo, xargs, find -exec …), or of `su -c` | that script is read the same way one level down, and the whole word quoted back for the outer shell |
| a comment | left as written |

Where no quoting is safe, `check` and `run` refuse the manifest in one line
that names the fix: backticks, `$((…))`, `${…}`, `$'…'`, a here-document,
an `eval` or `watch` argument, a command for ssh, the code of another
language (python -c, perl -e, node -e, ruby -e, awk and sed programs…), a
shell script that is itself built by expansion, or a shell procctl does not
read (fish, csh). The fix is to pass the item as data: an argument after the
script (`sh -c 'echo "$1"' sh {item}`), or the environment (`$PROCCTL_ITEM`).

The item is one argument, not options: a command that takes options reads an
item starting with `-` as one, so write `-- {item}` or `./{item}` where items
may start with a dash.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from procctl.config.shell_lex import PLACEHOLDER, Region, Script, Word, lex

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "lksh", "pdksh"})
"""Shells whose `-c` script procctl reads as POSIX shell."""
FOREIGN_SHELLS = frozenset({"fish", "csh", "tcsh", "rc", "es", "nu", "xonsh", "elvish", "pwsh", "powershell", "cmd"})
SHELL_RUNNERS = frozenset({"su", "runuser"})
"""Commands whose `-c SCRIPT` a shell runs."""
EVAL_LIKE = {
    "eval": "eval reads its arguments as a script again",
    "watch": "watch runs its arguments through sh -c",
    "ssh": "ssh hands its command to the remote shell",
}
# (Patterns compiled by `re` when first used: the commands of most manifests never ask.)
_INTERPRETER = (
    r"(python|pypy|perl|ruby|node|nodejs|deno|bun|php|lua|luajit|tclsh|wish|Rscript|R|osascript|julia|ocaml|guile|racket|sbcl|jshell|groovy|scala|kotlin|swift|elixir|erl|escript)[\d.]*$"
)
_CODE_FLAGS = frozenset({"-c", "-e", "-E", "-p", "-r", "--eval", "--print", "--command", "-Command", "--exec", "-x"})
_PERL_FLAGS = r"-[a-zA-Z]*[eE]$"
_AWK = frozenset({"awk", "gawk", "mawk", "nawk", "busybox awk"})
_SED = frozenset({"sed", "gsed"})


class UnsafePlacement(ValueError):
    """`{item}` stands where no quoting makes it safe. The text says where and the fix."""


def _base(value: str | None) -> str | None:
    return os.path.basename(value) if value else None


# ------------------------------------------------------------------ roles


_ARG_OPTIONS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})


def _shell_script(values: Sequence[str | None], k: int) -> str | None:
    """The shell that runs word `k` as its `-c` script, if one does: the
    nearest shell before it, with only options between, one of them `-c`."""
    for s in range(k - 1, -1, -1):
        name = _base(values[s])
        if name not in SHELLS and name not in FOREIGN_SHELLS:
            continue
        c_flag, j = False, s + 1
        while j < k:
            word = values[j]
            if word is None:
                return None
            if word in _ARG_OPTIONS:
                j += 2
                continue
            if word == "--":
                j += 1
                break
            if len(word) < 2 or word[0] not in "-+":
                break
            c_flag |= word[0] == "-" and word[1] != "-" and "c" in word[1:]
            j += 1
        return name if c_flag and j == k else None
    if k and values[k - 1] in ("-c", "--command") and any(_base(v) in SHELL_RUNNERS for v in values[: k - 1]):
        return "sh"
    return None


def _code_of(values: Sequence[str | None], k: int) -> str | None:
    """Why word `k` is code for something other than a POSIX shell, if it is."""
    before = [_base(v) or "" for v in values[:k]]
    for name, why in EVAL_LIKE.items():
        if name in before:
            return why
    flag = values[k - 1] if k else None
    for a, name in enumerate(before):
        if re.match(_INTERPRETER, name) and flag is not None:
            if flag in _CODE_FLAGS or (name.startswith(("perl", "ruby")) and re.match(_PERL_FLAGS, flag)):
                return f"{name} runs it as code"
        if name in _AWK and _program_operand(values, a, k, takes_arg=("-F", "-v"), from_file=("-f",)):
            return f"{name} runs it as its program"
        if name in _SED and (
            flag in ("-e", "--expression") or _program_operand(values, a, k, takes_arg=("-l",), from_file=("-e", "-f", "--expression", "--file"))
        ):
            return f"{name} runs it as its script"
    return None


def _program_operand(values: Sequence[str | None], a: int, k: int, *, takes_arg: tuple[str, ...], from_file: tuple[str, ...]) -> bool:
    """Whether word `k` is the program text of the program at `a`: its first
    operand, when no option gave the program otherwise."""
    j = a + 1
    while j < k:
        word = values[j]
        if word is None or word in from_file:
            return False
        if word == "--":
            return j + 1 == k
        if word in takes_arg:
            j += 2
        elif word.startswith("-") and len(word) > 1:
            j += 1
        else:
            return False
    return j == k


# -------------------------------------------------------------- templates
# (Named tuples: made at every start of procctl, dataclasses cost 1 ms more.)


class _Slot(NamedTuple):
    context: str
    """'bare', 'double', 'single' (quoted for /bin/sh) or 'raw' (an argv element)."""


class _Nested(NamedTuple):
    template: Template
    requote: bool
    """Quote the rendered script as one word for the outer shell."""


def quote_item(item: str, context: str) -> str:
    if context == "bare":
        return "'" + item.replace("'", "'\\''") + "'"
    if context == "double":
        return re.sub(r'([$`"\\])', r"\\\1", item)
    if context == "single":
        return item.replace("'", "'\\''")
    return item


class Template(NamedTuple):
    """A command (or one argument of it) with the places of `{item}` found."""

    pieces: tuple[str | _Slot | _Nested, ...]

    def render(self, item: str, numbers: Mapping[str, str]) -> str:
        out = []
        for piece in self.pieces:
            if isinstance(piece, str):
                for key, value in numbers.items():
                    piece = piece.replace("{" + key + "}", value)
                out.append(piece)
            elif isinstance(piece, _Slot):
                out.append(quote_item(item, piece.context))
            else:
                script = piece.template.render(item, numbers)
                out.append(shlex.quote(script) if piece.requote else script)
        return "".join(out)


DATA_FIX = "pass it as data: an argument after the script (sh -c '… \"$1\"' sh {item}) or the environment ($PROCCTL_ITEM)"


def _refuse(where: str, why: str = "", fix: str = DATA_FIX) -> UnsafePlacement:
    because = f" ({why})" if why else ""
    return UnsafePlacement(f"{{item}} in {where}{because} cannot be quoted safely; {fix}")


def compile_script(text: str) -> Template:
    """A shell command string → its template. Raises UnsafePlacement."""
    script, regions = lex(text)
    edits: list[tuple[int, int, _Slot | _Nested | None]] = []
    for region in regions:
        if region.reason and text.find(PLACEHOLDER, region.start, region.end) >= 0:
            raise _refuse(region.reason, fix=region.fix or DATA_FIX)
    _collect(text, script, regions, edits)
    pieces: list[str | _Slot | _Nested] = []
    at = 0
    for start, end, piece in sorted(edits, key=lambda e: e[0]):
        pieces.append(text[at:start])
        pieces.append(piece if piece is not None else text[start:end])
        at = end
    pieces.append(text[at:])
    return Template(tuple(p for p in pieces if p != ""))


def _collect(text: str, script: Script, regions: list[Region], edits: list[tuple[int, int, _Slot | _Nested | None]]) -> None:
    for command in script.commands:
        values = [word.value for word in command]
        for k, word in enumerate(command):
            if text.find(PLACEHOLDER, word.start, word.end) < 0:
                continue
            _word_edits(text, values, k, word, regions, edits)


def _word_edits(
    text: str, values: list[str | None], k: int, word: Word, regions: list[Region],
    edits: list[tuple[int, int, _Slot | _Nested | None]],
) -> None:  # fmt: skip
    shell = _shell_script(values, k)
    if shell is not None:
        if shell in FOREIGN_SHELLS:
            raise _refuse(f"a {shell} script", "procctl reads POSIX shell scripts only")
        if word.value is None:
            raise _refuse(f"a {shell} -c script built by expansion", "what the inner shell reads is known only at run time")
        edits.append((word.start, word.end, _Nested(compile_script(word.value), requote=True)))
        return
    why = _code_of(values, k)
    if why is not None:
        raise _refuse(f"the argument {text[word.start:word.end]!r}", why)
    for offset, context in word.slots:
        edits.append((offset, offset + len(PLACEHOLDER), _Slot(context)))
    for inner in word.scripts:
        _collect(text, inner, regions, edits)


def compile_argv(argv: Sequence[str]) -> tuple[Template, ...]:
    """An argument list (exec'd as is) → a template per argument: the item
    raw, except in a shell's `-c` script. Raises UnsafePlacement."""
    values: list[str | None] = list(argv)
    out = []
    for k, arg in enumerate(argv):
        if PLACEHOLDER not in arg:
            out.append(Template((arg,)))
            continue
        shell = _shell_script(values, k)
        if shell is not None:
            if shell in FOREIGN_SHELLS:
                raise _refuse(f"a {shell} script", "procctl reads POSIX shell scripts only")
            out.append(Template((_Nested(compile_script(arg), requote=False),)))
            continue
        why = _code_of(values, k)
        if why is not None:
            raise _refuse(f"the argument {arg!r}", why)
        parts = arg.split(PLACEHOLDER)
        pieces: list[str | _Slot | _Nested] = [parts[0]]
        for part in parts[1:]:
            pieces += [_Slot("raw"), part]
        out.append(Template(tuple(p for p in pieces if p != "")))
    return tuple(out)


class CommandTemplate(NamedTuple):
    """A process's command, ready to take each item."""

    cmd: str | tuple[str, ...]
    script: Template | None
    argv: tuple[Template, ...] | None

    def render(self, numbers: Mapping[str, str], item: str | None = None) -> str | tuple[str, ...]:
        """The command with `{index}`/`{port}` (`numbers`) and the item in."""
        if item is None:
            return _numbers_only(self.cmd, numbers)
        if self.script is not None:
            return self.script.render(item, numbers)
        assert self.argv is not None
        return tuple(t.render(item, numbers) for t in self.argv)


def _numbers_only(cmd: str | tuple[str, ...], numbers: Mapping[str, str]) -> str | tuple[str, ...]:
    def fill(text: str) -> str:
        for key, value in numbers.items():
            text = text.replace("{" + key + "}", value)
        return text

    return fill(cmd) if isinstance(cmd, str) else tuple(fill(part) for part in cmd)


@functools.lru_cache(maxsize=256)
def compile_command(cmd: str | tuple[str, ...]) -> CommandTemplate:
    """Find where `{item}` stands in a command. Raises UnsafePlacement."""
    if PLACEHOLDER not in (cmd if isinstance(cmd, str) else "".join(cmd)):
        return CommandTemplate(cmd, Template((cmd,)) if isinstance(cmd, str) else None, None if isinstance(cmd, str) else tuple(Template((a,)) for a in cmd))
    if isinstance(cmd, str):
        return CommandTemplate(cmd, compile_script(cmd), None)
    return CommandTemplate(cmd, None, compile_argv(cmd))


def render_command(cmd: str | tuple[str, ...], numbers: Mapping[str, str], item: str | None = None) -> str | tuple[str, ...]:
    """`cmd` with `{index}`/`{port}` (`numbers`) and, for an `each` job, the
    item. Raises UnsafePlacement (the loader has refused those already)."""
    if item is None:
        return _numbers_only(cmd, numbers)
    return compile_command(cmd).render(numbers, item)

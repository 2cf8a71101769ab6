"""`{item}` wherever it stands: each command is rendered with hostile items
and run for real through /bin/sh. No marker file may appear, and the command
must receive the item byte for byte. Where no quoting is safe, the template
is refused, with the fix in the message."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from procctl.config.placeholders import UnsafePlacement, compile_command, render_command


def hostile(marker: Path) -> list[str]:
    touch = f"touch {marker}"
    return [
        f"$({touch})",
        f"`{touch}`",
        f"; {touch}",
        f"&& {touch}",
        f"| {touch}",
        f"a\n{touch}",
        f"a\n{touch} #",
        f'"; {touch}; echo "',
        f"'; {touch}; echo '",
        f"'\"'\"$({touch})\"'\"'",
        f"\\'; {touch}; echo \\'",
        "a b  c\td",
        "-n",
        "--help",
        "*",
        "\\",
        "a\\",
        "\\n\\\\",
        "$HOME ${HOME} $1 $@ !! ~root",
        "{item} {index} {port}",
        "LD_PRELOAD=/nonexistent.so",
        "é ü \u2603",
        "",
        "%s %d %%",
    ]


def _run(cmd: str | tuple[str, ...], cwd: Path) -> bytes:
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert done.returncode == 0, (cmd, done.stderr)
    return done.stdout


CASES: list[tuple[str, str | tuple[str, ...], Callable[[str], str]]] = [
    ("bare", "printf '%s|' {item}", lambda i: f"{i}|"),
    ("adjacent", "printf '%s|' {item}.png x{item}", lambda i: f"{i}.png|x{i}|"),
    ("double quotes", 'printf \'%s|\' "file: {item}"', lambda i: f"file: {i}|"),
    ("single quotes", "printf '%s|' 'file: {item}'", lambda i: f"file: {i}|"),
    ("all three in one word", "printf '%s|' pre\"{item}\"'{item}'{item}post", lambda i: f"pre{i}{i}{i}post|"),
    ("sh -c '…'", "sh -c 'printf \"%s|\" {item}'", lambda i: f"{i}|"),
    ("sh -c with inner quotes", "sh -c 'printf \"%s|\" \"x {item}\" '\"'\"'{item}'\"'\"", lambda i: f"x {i}|{i}|"),
    ("bash -c \"…\"", "bash -c \"printf '%s|' '{item}' \\\"{item}\\\"\"", lambda i: f"{i}|{i}|"),
    ("sh -ec and options", "sh -e -u -c 'printf \"%s|\" {item}'", lambda i: f"{i}|"),
    ("two shells deep", "sh -c \"bash -c 'printf \\\"%s|\\\" {item}'\"", lambda i: f"{i}|"),
    ("after env", "env FOO=1 sh -c 'printf \"%s|\" {item}'", lambda i: f"{i}|"),
    ("an argument after the script", "sh -c 'printf \"%s|\" \"$1\"' sh {item}", lambda i: f"{i}|"),
    ("command substitution", "printf '%s|' \"$(printf '%s' {item})\" $(printf '%s' x{item}x | wc -c)", lambda i: f"{i}|{len(('x' + i + 'x').encode())}|"),
    ("case", "case {item} in *) printf '%s|' {item};; esac", lambda i: f"{i}|"),
    ("case in $(…)", "printf '%s|' \"$(case x in x) printf '%s' {item};; esac)\"", lambda i: f"{i}|"),
    ("for list", "for f in {item}; do printf '%s|' \"$f\"; done", lambda i: f"{i}|"),
    ("a comment", "printf '%s|' {item} # {item}", lambda i: f"{i}|"),
    ("an option-safe form", "printf '%s|' -- ./{item}", lambda i: f"--|./{i}|"),
    ("xargs sh -c", "printf x | xargs sh -c 'printf \"%s|\" {item}' sh", lambda i: f"{i}|"),
    ("find -exec sh -c", "find . -maxdepth 0 -exec sh -c 'printf \"%s|\" {item}' \\;", lambda i: f"{i}|"),
    ("the first word", "{item} 2>/dev/null; printf '%s|' done", lambda i: "done|"),
    ("a list, raw", ("printf", "%s|", "{item}", "x{item}"), lambda i: f"{i}|x{i}|"),
    ("a list, sh -c script", ("sh", "-c", "printf '%s|' {item} \"{item}\""), lambda i: f"{i}|{i}|"),
]


@pytest.mark.parametrize("name, template, expected", CASES, ids=[case[0] for case in CASES])
def test_hostile_items_stay_data(tmp_path: Path, name: str, template: str | tuple[str, ...], expected: Callable[[str], str]) -> None:
    """1. The template rendered with each hostile item, run by /bin/sh.
    2. No marker file appears; the output is the item, byte for byte."""
    marker = tmp_path / "PWNED"
    work = tmp_path / "work"
    work.mkdir()
    for item in hostile(marker):
        if name == "the first word" and not item:
            continue  # '' as a command name: sh says so, and that is all
        cmd = render_command(template, {"index": "3", "port": "8000"}, item)
        out = _run(cmd, work)
        assert not marker.exists(), (name, item, cmd)
        assert out == expected(item).encode(), (name, item, cmd, out)


def test_numbers_go_in_as_they_are_and_only_once() -> None:
    cmd = render_command("echo {index} {port} {item} '{index}'", {"index": "3", "port": "8000"}, "{index}")
    assert cmd == "echo 3 8000 '{index}' '3'"
    assert render_command(("a", "{port}"), {"port": "8000"}) == ("a", "8000")


REFUSED = [
    ("echo `echo {item}`", "backticks", "write $(…) instead"),
    ("echo \"`echo {item}`\"", "backticks", "write $(…) instead"),
    ("echo $((1 + {item}))", "arithmetic expansion", "$PROCCTL_ITEM"),
    ("(( x = {item} ))", "arithmetic command", "$PROCCTL_ITEM"),
    ("echo ${X:-{item}}", "parameter expansion", "$PROCCTL_ITEM"),
    ("echo \"${item}\"", "${item}", "shell variable"),
    ("cat <<EOF\n{item}\nEOF", "here-document", "$PROCCTL_ITEM"),
    ("cat <<'EOF'\n{item}\nEOF\necho done", "here-document", "$PROCCTL_ITEM"),
    ("echo $'{item}'", "$'…' quoting", "$PROCCTL_ITEM"),
    ("eval \"echo {item}\"", "eval reads its arguments as a script", 'sh -c \'… "$1"\' sh {item}'),
    ("watch -n1 echo {item}", "watch runs its arguments", "$PROCCTL_ITEM"),
    ("ssh host cat {item}", "remote shell", "$PROCCTL_ITEM"),
    ("python3 -c \"print('{item}')\"", "python3 runs it as code", "$PROCCTL_ITEM"),
    ("perl -ne 'print \"{item}\"' f", "perl runs it as code", "$PROCCTL_ITEM"),
    ("node -e 'console.log(\"{item}\")'", "node runs it as code", "$PROCCTL_ITEM"),
    ("awk '{print \"{item}\"}' f", "awk runs it as its program", "$PROCCTL_ITEM"),
    ("awk -F: -v x=1 '{print \"{item}\"}' f", "awk runs it as its program", "$PROCCTL_ITEM"),
    ("sed 's/x/{item}/' f", "sed runs it as its script", "$PROCCTL_ITEM"),
    ("sed -n -e 's/x/{item}/p' f", "sed runs it as its script", "$PROCCTL_ITEM"),
    ("sh -c \"echo $HOME {item}\"", "built by expansion", "$PROCCTL_ITEM"),
    ("fish -c 'echo {item}'", "fish script", "$PROCCTL_ITEM"),
    ("sh -c 'echo `echo {item}`'", "backticks", "write $(…) instead"),
    (("python3", "-c", "print('{item}')"), "python3 runs it as code", "$PROCCTL_ITEM"),
    (("sh", "-c", "eval {item}"), "eval", "$PROCCTL_ITEM"),
]


@pytest.mark.parametrize("template, what, fix", REFUSED, ids=[str(case[0]) for case in REFUSED])
def test_places_no_quoting_makes_safe_are_refused(template: str | tuple[str, ...], what: str, fix: str) -> None:
    with pytest.raises(UnsafePlacement) as caught:
        compile_command(template)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("{item} in ")
    assert what in message and fix in message, message


@pytest.mark.parametrize(
    "template",
    [
        "awk -f prog.awk {item}",
        "sed -i 's/a/b/' {item}",
        "python3 script.py {item}",
        "grep -e x -- {item}",
        "echo ${HOME} {item}",
        "echo $((1 + 2)) {item}",
        "cat <<EOF\nhello\nEOF\necho {item}",
    ],
)
def test_the_item_as_data_next_to_code_is_fine(template: str) -> None:
    """Code elsewhere in the command does not matter where the item is data."""
    cmd = render_command(template, {}, "x")
    assert isinstance(cmd, str) and "'x'" in cmd


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_runs_the_nested_scripts_too(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for item in hostile(marker):
        cmd = render_command("bash -c 'printf \"%s|\" {item} \"{item}\"'", {}, item)
        assert isinstance(cmd, str)
        assert _run(cmd, tmp_path) == f"{item}|{item}|".encode()
    assert not marker.exists()

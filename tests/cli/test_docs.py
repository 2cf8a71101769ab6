"""The man page and README move with the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from procctl.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def _man_text() -> str:
    # Undo roff's escaped hyphens so that options read as typed.
    return (ROOT / "man" / "procctl.1").read_text().replace("\\-", "-")


def test_every_command_is_in_the_man_page() -> None:
    man = _man_text()
    commands = _commands()
    assert {"run", "check", "init", "import"} <= set(commands)
    for name in commands:
        assert re.search(rf"^\.(B|TP\n\.B) {re.escape(name)}\b", man, re.M) or f".B {name}" in man, name


def test_every_option_of_every_command_is_in_the_man_page() -> None:
    man = _man_text()
    for name, command in _commands().items():
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                for opt in param.opts:
                    assert opt in man, f"{name} {opt} is missing from man/procctl.1"


def test_every_option_has_help() -> None:
    for name, command in _commands().items():
        for param in command.params:  # type: ignore[attr-defined]
            assert getattr(param, "help", None), f"{name} {param.name} has no help text"


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert "pip install -e ." in blocks[0] and "procctl run -f examples/procfile.toml" in blocks[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci

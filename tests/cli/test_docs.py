"""The man page and README move with the CLI."""

from __future__ import annotations

import inspect
import re
import shlex
import tomllib
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


def _ci_steps() -> list[str]:
    """The lines `.ci/run` runs: everything after its `cd`."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cd "))
    return [line for line in lines[start + 1 :] if line.strip()]


def test_each_slow_group_is_left_out_of_the_default_run_and_runs_as_a_step_of_its_own() -> None:
    """pytest's addopts deselect the slow groups (`-m "not A and not B"`),
    each a registered marker; `.ci/run` runs the default suite, then each
    group on its own line, once."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    addopts = shlex.split(options["addopts"])
    assert addopts.count("-m") == 1
    expression = addopts[addopts.index("-m") + 1]
    groups = re.findall(r"\bnot (\w+)", expression)
    assert "cluster" in groups and expression == " and ".join(f"not {group}" for group in groups)
    assert set(groups) <= {marker.split(":")[0] for marker in options["markers"]}
    steps = _ci_steps()
    assert steps[0] == "python3 -m pip install -q -e '.[test]' && python3 -m pytest -q"
    for group in groups:
        assert sum(step.endswith(f"python3 -m pytest -q -m {group}") for step in steps) == 1, group


def _verb_rows() -> list[str]:
    """The rows of docs/control-protocol.md's table of verbs."""
    doc = (ROOT / "docs" / "control-protocol.md").read_text()
    head = "| verb | args | does | result |\n| --- | --- | --- | --- |\n"
    start = doc.index(head) + len(head)
    return doc[start : doc.index("\n\n", start)].splitlines()


def test_the_control_protocol_doc_lists_the_verbs_as_the_table_says() -> None:
    from procctl.control.protocol import VERBS

    expected = []
    for verb in VERBS.values():
        args = ", ".join(f"`{arg.name}: {arg.shown}`" for arg in verb.args) or "—"
        expected.append(f"| `{verb.name}` | {args} | {verb.does} | {verb.result} |")
    assert _verb_rows() == expected


def test_every_verb_has_its_handler_and_its_command_and_every_request_a_verb() -> None:
    import ast

    from procctl.control.protocol import VERBS
    from procctl.engine.operations import Operations

    for verb in VERBS.values():
        handler = getattr(Operations, verb.handler)
        params = set(inspect.signature(handler).parameters) - {"self"}
        assert {arg.param or arg.name for arg in verb.args} | ({verb.caller} if verb.caller else set()) == params, verb.name
    commands = _commands()
    # Verbs whose command has another name: shutdown is `down`, subscribe `top`.
    assert set(VERBS) - {"ping", "shutdown", "subscribe"} <= set(commands)
    # `procctl limits` offers what a live `limits` request may set.
    from procctl.config.values import LIVE_LIMITS

    options = {opt for param in commands["limits"].params for opt in param.opts}  # type: ignore[attr-defined]
    assert {"--" + key.replace("_", "-") for key in LIVE_LIMITS} <= options
    assert VERBS["limits"].args[1].shown == "{" + ", ".join(LIVE_LIMITS) + "}"
    # Every request the CLI sends names a verb of the table, by its name.
    sent = set()
    for path in (ROOT / "procctl" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "call" and len(node.args) >= 2:
                assert isinstance(node.args[1], ast.Constant), f"{path.name}: a verb not named literally"
                sent.add(node.args[1].value)
    assert sent and sent <= set(VERBS), sent - set(VERBS)


def test_the_readme_key_table_and_the_man_page_are_the_views() -> None:
    from procctl.ui.keys import KEYS

    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "man" / "procctl.1").read_text().replace("\\-", "-")
    for key in KEYS:
        assert f"| `{key.keys}` | {key.does} |" in readme, f"README's key table lacks {key.keys!r}: {key.does}"
        assert f".B {key.keys}\n{key.does}.\n" in man, f"the man page's key list lacks {key.keys!r}: {key.does}"


def test_the_architecture_map_names_every_module() -> None:
    """docs/architecture.md moves with the code: every module of the package
    is on the map."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "procctl"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.read_text().strip()  # (an empty package __init__ is no module of its own)
        and path.relative_to(package).as_posix() not in text and f"procctl/{path.relative_to(package).as_posix()}" not in text
    ]
    assert not missing, f"not in docs/architecture.md: {missing}"


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    """What a contributor is told to run is what CI runs, step for step."""
    steps = (ROOT / ".ci" / "run").read_text().split("\ncd ", 1)[1].splitlines()[1:]
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the tests:\n\n```sh\n", 1)[1].split("```", 1)[0]
    assert [line for line in steps if line.strip()] == [line for line in block.splitlines() if line.strip()]


def _toml_blocks() -> list[tuple[str, str]]:
    """(where, text) of every TOML example: the ```toml blocks of README.md
    and docs/, and the man page's MANIFEST example."""
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(r"^```toml\n(.*?)^```", text, re.S | re.M):
            blocks.append((f"{path.name}:{text[: match.start()].count(chr(10)) + 1}", match.group(1)))
    man = _man_text()
    section = man[man.index(".SH MANIFEST") :]
    example = section[section.index(".nf\n") + 4 : section.index(".fi\n")]
    blocks.append(("man/procctl.1 MANIFEST", example.replace("\\e", "\\")))
    return blocks


def test_every_toml_example_in_the_docs_loads(tmp_path: Path) -> None:
    """Each example is a manifest procctl loads (TOML 1.0, as tomllib reads
    it, and valid for the loader), given the files and directories it names."""
    import tomllib

    from procctl.config.loader import load_manifest

    blocks = _toml_blocks()
    assert len(blocks) >= 4, blocks
    for number, (where, text) in enumerate(blocks):
        directory = tmp_path / str(number)
        directory.mkdir()
        document = tomllib.loads(text)  # a TOML 1.1 inline table spread over lines fails here
        tables = [document.get("settings", {}), *document.get("process", {}).values()]
        for table in tables:
            if "env_file" in table:
                (directory / table["env_file"]).write_text("")
            if "cwd" in table:
                (directory / table["cwd"]).mkdir(exist_ok=True)
        manifest = directory / "procfile.toml"
        manifest.write_text(text)
        loaded = load_manifest(manifest)
        assert loaded.processes or "process" not in document, where


def test_the_distributed_doc_shows_every_option_of_the_cluster_and_of_where_jobs_run() -> None:
    """docs/distributed.md moves with the command line: every option of
    `procctl cluster`, `run --executor` (each form) and `--rerun-failed`,
    the manifest's keys for a cluster, and the extra to install."""
    doc = (ROOT / "docs" / "distributed.md").read_text()
    cluster = _commands()["cluster"]
    wanted = [opt for param in cluster.params if param.param_type_name == "option" for opt in param.opts if opt not in ("--help", "-h")]  # type: ignore[attr-defined]
    wanted += ["--executor dask://", "--executor dask`", "--executor local", "--rerun-failed", 'executor = "dask"', "[settings] dask = { scheduler = ", "pip install 'procctl[dask]'"]
    assert [text for text in wanted if text not in doc] == []

"""The command line behaves as its peers' users expect: one meaning of -f,
shell completion, parser errors as one `procctl: …` line, help that shows
what its text says, and the old spellings kept for a while with a warning."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from conftest import Project, wait_until

from procctl.cli import app

MANIFEST = """
    [process.web]
    cmd = "echo web says hi"
    [process.worker]
    cmd = "echo worker says hi"
"""


def _commands() -> dict[str, typer.main.click.Command]:  # type: ignore[name-defined]
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _completion(project: Project, shell: str, words: str, cword: int | None = None) -> list[str]:
    """What the shell's completion function gets back from procctl, through
    the protocol its installed script speaks."""
    env = {"_PROCCTL_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env.update(COMP_WORDS=words, COMP_CWORD=str(cword if cword is not None else len(words.split()) - (0 if words.endswith(" ") else 1)))
    else:
        env["_TYPER_COMPLETE_ARGS"] = words
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    result = project.run(env=env)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_completion_offers_commands_options_and_the_manifests_process_names(project: Project) -> None:
    project.write(MANIFEST)
    other = project.write('[process.alpha]\ncmd = "true"\n', name="other.toml")
    assert "run" in _completion(project, "bash", "procctl ru")
    assert _completion(project, "bash", "procctl run --on") == ["--only"]
    assert _completion(project, "bash", "procctl run w") == ["web", "worker"]
    assert _completion(project, "bash", "procctl pause wo") == ["worker"]
    assert _completion(project, "bash", "procctl run --only web,wo") == ["web,worker"]
    assert _completion(project, "bash", "procctl scale we") == ["web="]
    assert _completion(project, "bash", "procctl logs w") == ["web", "worker"]
    assert _completion(project, "bash", "procctl history w") == ["web", "worker"]
    # The manifest of the -f given so far.
    assert _completion(project, "bash", f"procctl run -f {other} a") == ["alpha"]
    # zsh and fish: the same names, in their formats.
    zsh = " ".join(_completion(project, "zsh", "procctl run w"))
    assert '"web"' in zsh and '"worker"' in zsh and "alpha" not in zsh, zsh
    fish = _completion(project, "fish", "procctl run w")
    assert [line.split("\t")[0] for line in fish if line.strip()] == ["web", "worker"], fish
    # A manifest that cannot be read completes nothing, and says nothing.
    project.write("not toml [", name="procfile.toml")
    assert _completion(project, "bash", "procctl run w") == []


SCRIPT_OF = {
    "bash": "complete -o default -F _procctl_completion procctl",
    "zsh": "#compdef procctl",
    "fish": "complete --command procctl",
}
"""A line of each shell's completion script, found in no other's."""


def _started_by(shell: str, project: Project, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """procctl started by SHELL, which stays its parent (as /bin/sh does in a
    Dockerfile's RUN or a Makefile's recipe)."""
    env = project.env({"HOME": str(home)} if home else None)
    command = [shell, "-c", '"$@"; exit $?', shell, sys.executable, "-m", "procctl", *args]
    return subprocess.run(command, cwd=project.root, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spelling", [("completion",), ("--show-completion",)])
def test_completion_prints_the_script_of_the_shell_named(project: Project, spelling: tuple[str, ...]) -> None:
    """The shell named, whatever shell procctl was started from: zsh's script
    from bash, any from /bin/sh (which has none)."""
    project.write(MANIFEST)
    for shell, line in SCRIPT_OF.items():
        for parent in ("sh", "bash"):
            shown = _started_by(parent, project, *spelling, shell)
            assert shown.returncode == 0, shown.stderr
            assert line in shown.stdout and all(other not in shown.stdout for other in SCRIPT_OF.values() if other != line), (parent, shell, shown.stdout)


def test_completion_of_no_shell_named_is_the_parents_or_one_line(project: Project) -> None:
    project.write(MANIFEST)
    from_bash = _started_by("bash", project, "completion")
    assert from_bash.returncode == 0 and SCRIPT_OF["bash"] in from_bash.stdout, from_bash.stderr
    for args in (("completion",), ("--show-completion",), ("--install-completion",)):
        from_sh = _started_by("sh", project, *args)
        assert from_sh.returncode == 2 and from_sh.stdout == "", from_sh
        assert from_sh.stderr == "procctl: completion: cannot tell which shell to complete (started from sh): name it, as in 'procctl completion bash'\n"
    unknown = project.run("completion", "tcsh")
    assert (unknown.returncode, unknown.stderr) == (2, "procctl: completion: unknown shell 'tcsh': bash, zsh, fish, powershell or pwsh\n")


def test_completion_installs_where_the_shell_reads_it(project: Project, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for _ in range(2):
        installed = _started_by("sh", project, "--install-completion", "bash", home=home)
        assert installed.returncode == 0, installed.stderr
    script = home / ".bash_completions" / "procctl.sh"
    assert SCRIPT_OF["bash"] in script.read_text()
    assert (home / ".bashrc").read_text().count(f"source '{script}'") == 1
    assert installed.stdout == f"bash completion installed in {script}; it takes effect in the shells started from now on\n"
    fish = _started_by("sh", project, "completion", "fish", "--install", home=home)
    assert fish.returncode == 0 and SCRIPT_OF["fish"] in (home / ".config" / "fish" / "completions" / "procctl.fish").read_text(), fish.stderr
    # A home that is not a directory: one line, exit 1.
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    refused = _started_by("sh", project, "completion", "fish", "--install", home=not_a_directory)
    assert refused.returncode == 1 and refused.stderr == f"procctl: completion: cannot install the fish completion: {not_a_directory}/.config/fish/completions: Not a directory\n", refused


def test_the_bash_script_completes_in_a_real_bash(project: Project) -> None:
    project.write(MANIFEST)
    script = project.run("completion", "bash")
    assert script.returncode == 0 and "complete " in script.stdout, script.stderr
    bash = shutil.which("bash")
    assert bash is not None
    bindir = project.root / "bin"
    bindir.mkdir()
    (bindir / "procctl").write_text(f"#!/bin/sh\nexec '{sys.executable}' -m procctl \"$@\"\n")
    (bindir / "procctl").chmod(0o755)
    test = script.stdout + '\nCOMP_WORDS=(procctl restart w); COMP_CWORD=2; _procctl_completion procctl; printf "%s\\n" "${COMPREPLY[@]}"\n'
    result = subprocess.run([bash, "--norc", "-c", test], cwd=project.root, env=project.env({"PATH": f"{bindir}:{os.environ['PATH']}"}), capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["web", "worker"], result


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "--bogus"), r"procctl: run: no such option: --bogus \(see 'procctl run -h'\)"),
        (("scale",), r"procctl: scale: missing argument 'NAME=N' \(see 'procctl scale -h'\)"),
        (("nope",), r"procctl: no such command 'nope' \(see 'procctl -h'\)"),
        (("history", "-n", "0"), r"procctl: history: invalid value for '--limit' / '-n': 0 is not in the range x>=1 \(see 'procctl history -h'\)"),
        (("logs", "--lines"), r"procctl: logs: option '--lines' requires an argument \(see 'procctl logs -h'\)"),
    ],
)
def test_parser_errors_are_one_line_and_exit_2(project: Project, args: tuple[str, ...], expected: str) -> None:
    project.write(MANIFEST)
    result = project.run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.fullmatch(expected + "\n", result.stderr, re.I), result.stderr
    assert not set(result.stderr) & set("╭╰│─"), result.stderr


def test_help_shows_its_text_whole_and_usage_names_arguments(project: Project) -> None:
    """Every bracketed word of every help text reaches `-h` (no markup eats
    `[env]`), and usage lines name arguments in capitals (`NAME=N`)."""
    import inspect

    for name, command in _commands().items():
        helped = project.run(name, "-h", env={"COLUMNS": "400"})
        assert helped.returncode == 0, helped.stderr
        text = " ".join(helped.stdout.split())
        texts = [getattr(param, "help", "") or "" for param in command.params if not getattr(param, "hidden", False)]
        texts.append(inspect.cleandoc(command.help or ""))
        for help_text in texts:
            for bracketed in re.findall(r"\[[^\]]+\]", help_text):
                assert bracketed in text, f"procctl {name} -h lost {bracketed}"
        usage = helped.stdout.splitlines()[0]
        assert not re.search(r"[{\[]?[a-z_]+[}\]]?(\.\.\.)?$", usage.split("[OPTIONS]")[-1].strip() or "X"), usage
    assert "Usage: procctl scale [OPTIONS] {NAME=N}" in project.run("scale", "-h").stdout
    assert "[settings] env_file" in " ".join(project.run("import", "-h").stdout.split())


def test_f_is_the_manifest_in_every_command() -> None:
    """Every command but `completion`, whose script is the same for every
    manifest (the names come from the -f on the line being completed)."""
    for name, command in _commands().items():
        if name == "completion":
            assert not any("-f" in getattr(param, "opts", []) for param in command.params)
            continue
        owners = [param for param in command.params if "-f" in getattr(param, "opts", [])]
        assert len(owners) == 1 and owners[0].opts == ["--file", "-f"], f"{name}: -f is {[p.opts for p in owners]}"


def test_logs_f_names_the_manifest_and_the_old_follow_still_works(project: Project) -> None:
    project.write(MANIFEST)
    (project.root / "other").mkdir()
    other = project.write('[process.alpha]\ncmd = "echo alpha here"\n', name="other/procfile.toml")
    assert project.run("run", "--plain").returncode == 0
    assert project.run("run", "--plain", "-f", str(other)).returncode == 0
    # -f FILE: that manifest's logs, as in every command.
    named = project.run("logs", "-f", "other/procfile.toml", "--no-events")
    assert named.returncode == 0 and named.stdout.strip() == "alpha here" and named.stderr == "", named
    # -F follows (ends at once with no supervisor running).
    follow = project.run("logs", "web", "-F", "--no-events")
    assert follow.returncode == 0 and follow.stdout.strip() == "web says hi" and follow.stderr == "", follow
    # The old `logs -f` still follows, and says what to write now.
    for args in (("logs", "-f"), ("logs", "-f", "web"), ("logs", "web", "-f", "-n", "5")):
        old = project.run(*args, "--no-events")
        assert old.returncode == 0, old
        assert "web says hi" in old.stdout
        assert old.stderr == "procctl: warning: 'logs -f' to follow is deprecated: -f names the manifest in every command; follow with -F (--follow)\n"


def test_run_json_leaves_stdout_to_the_json(project: Project) -> None:
    project.write(MANIFEST)
    result = project.run("run", "--plain", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # no "Extra data": the JSON alone
    assert {row["name"] for row in summary["instances"]} == {"web", "worker"}
    assert "web     | web says hi" in result.stderr or "web | web says hi" in " ".join(result.stderr.split(" "))
    assert "web says hi" in result.stderr
    both = project.run("run", "--json", "--junit", "-")
    assert both.returncode == 2 and both.stderr.startswith("procctl: --json takes stdout")


def test_up_takes_runs_options(project: Project) -> None:
    project.write("""
        [process.web]
        cmd = "sleep 120"
        [process.worker]
        cmd = "sleep 120"
        [process.job]
        cmd = "exit 3"
    """)
    events = project.root / "events.jsonl"
    up = project.run("up", "-d", "-j", "auto", "--only", "web,job", "--except", "job", "--keep-going", "--timeout", "10m", "--events", "events.jsonl")
    assert up.returncode == 0, up.stderr
    try:
        status = project.status()
        assert status is not None
        assert [row["name"] for row in status["instances"]] == ["web"]  # type: ignore[index]
        assert "auto" in json.dumps(status["pool"])  # type: ignore[index]
        wait_until(lambda: events.exists() and '"started"' in events.read_text(), what="the events file, where up -d was run")
    finally:
        assert project.run("down").returncode == 0
    refused = project.run("up", "-d", "--junit", "-")
    assert refused.returncode == 2 and "give --events and --junit a file" in refused.stderr


def test_import_names_the_env_file_and_refuses_what_check_refuses(project: Project) -> None:
    (project.root / "Procfile").write_text("web: echo $GREETING $PORT\n")
    (project.root / ".env").write_text("GREETING=secret-hello\n")
    result = project.run("import")
    assert result.returncode == 0, result.stderr
    text = project.manifest.read_text()
    assert "secret-hello" not in text and 'env_file = ".env"' in text
    assert "| secret-hello 5000" in project.run("run", "--plain").stdout
    # -f is where it writes, as in init; -o is the old spelling.
    assert project.run("import", "-f", "sub.toml").returncode == 0 and (project.root / "sub.toml").is_file()
    old = project.run("import", "-o", "old.toml")
    assert old.returncode == 0 and (project.root / "old.toml").is_file() and "'import -o' is deprecated" in old.stderr
    # What check refuses, import refuses, writing nothing.
    (project.root / "Procfile").write_text("web: a\nweb: b\n")
    twice = project.run("import", "-f", "twice.toml")
    assert twice.returncode == 2 and twice.stderr == "procctl: Procfile:2: process 'web' is defined twice\n"
    (project.root / "Procfile").write_text("web: a\n")
    (project.root / ".env").write_text("PORT=99999\n")
    port = project.run("import", "-f", "port.toml")
    assert port.returncode == 2 and port.stderr == "procctl: .env: PORT 99999 gives web port 99999, outside 1 to 65535\n", port.stderr
    assert project.run("check", "-f", "Procfile").stderr == port.stderr
    assert project.run("import", "-f", "notoml").returncode == 2
    assert sorted(path.name for path in project.root.iterdir() if "toml" in path.name) == ["old.toml", "procfile.toml", "sub.toml"]


def test_benchmark_options_mean_what_hyperfines_do(project: Project) -> None:
    project.write('[process.greet]\ncmd = "true"\n')
    prepared = project.run("benchmark", "-p", "echo x >> prepared", "--runs", "2", "true", "--json")
    assert prepared.returncode == 0, prepared.stderr
    assert (project.root / "prepared").read_text() == "x\nx\n"
    # -N: no shell, as --shell none (a shell would run the redirection).
    unshelled = project.run("benchmark", "-N", "--runs", "1", "--ignore-failure", "ls > listed", "--json")
    assert unshelled.returncode == 0, unshelled.stderr
    assert not (project.root / "listed").exists()
    old = project.run("benchmark", "-p", "greet", "--runs", "1")
    assert old.returncode == 2
    assert "-p is --prepare, as in hyperfine: to time a process of the manifest, use --process greet" in old.stderr
    assert project.run("benchmark", "--process", "greet", "--runs", "1", "--json").returncode == 0
    spawned = project.run("benchmark", "--spawn", "--jobs", "5", "--runs", "1", "--json")
    assert spawned.returncode == 0, spawned.stderr
    assert json.loads(spawned.stdout)["jobs"] == 5
    assert "'benchmark --jobs' is deprecated" in spawned.stderr


def _on_dumb_terminal(project: Project, *args: str) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child: procctl on the pseudo-terminal
        os.chdir(project.root)
        env = {**project.env(), "TERM": "dumb"}
        env.pop("NO_COLOR")  # so that only TERM=dumb keeps the colors off
        os.execve(sys.executable, [sys.executable, "-m", "procctl", *args], env)
    out = b""
    try:
        while chunk := os.read(fd, 65536):
            out += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return out


def test_a_dumb_terminal_gets_no_escape_sequences(project: Project) -> None:
    project.write(MANIFEST)
    for args in (("run",), ("check",), ("benchmark", "--runs", "2", "true"), ("history",)):
        out = _on_dumb_terminal(project, *args)
        assert b"\x1b" not in out, (args, out[:300])
        assert out.strip(), args


def test_an_unknown_name_gets_the_nearest_known_one_everywhere(project: Project) -> None:
    project.write(MANIFEST)
    hint = "(did you mean 'web'?); known processes: web, worker"
    assert project.run("run", "--plain").returncode == 0
    for args in (("run", "wbe"), ("run", "--except", "wbe"), ("up", "-d", "wbe"), ("logs", "wbe"), ("benchmark", "--process", "wbe"), ("history", "wbe")):
        result = project.run(*args)
        assert result.returncode == 2 and hint in result.stderr and len(result.stderr.splitlines()) == 1, (args, result.stderr)
    assert "(did you mean 'worker'?)" in project.run("run", "--can-die", "wokrer").stderr
    # history: a known process with no runs yet is no error; a name unknown
    # to both the manifest and the history is.
    project.write(MANIFEST + '    [process.later]\n    cmd = "true"\n')
    assert project.run("history", "later").returncode == 0
    assert project.run("history", "web.1").returncode == 0
    assert project.run("history", "nothing-like-it").returncode == 2
    project.write(MANIFEST + '    [process.svc]\n    cmd = "sleep 120"\n')
    assert project.run("up", "-d", "svc").returncode == 0
    try:
        for args in (("pause", "scv"), ("scale", "scv=2"), ("send", "scv", "hi")):
            result = project.run(*args)
            assert result.returncode == 2 and "(did you mean 'svc'?)" in result.stderr, (args, result.stderr)
    finally:
        assert project.run("down").returncode == 0

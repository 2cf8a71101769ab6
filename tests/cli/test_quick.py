"""The usual forms of `check`, `run` and `status --json` are answered without
the Typer app, with the same options, output, errors and exit codes as the
app's."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from procctl.cli import app
from procctl.cli.planning import check
from procctl.cli.quick import FORMS, parse
from procctl.cli.running import run
from tests.conftest import Project

HEAVY = {"typer", "click", "rich", "textual", "psutil", "asyncio"}
"""What none of these command lines needs before it acts (`run` loads asyncio and psutil to run)."""
CHECK_HEAVY = HEAVY | {"dataclasses", "inspect", "ast", "sqlite3"}
"""And what `check` need not load to read a manifest: the model and the plan are
named tuples and plain classes (dataclasses, with inspect and ast, cost it ~6 ms);
sqlite3 (1 ms) only where a run history exists to predict from."""


def _command(name: str) -> typer.main.TyperCommand:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined,no-any-return]


def test_the_quick_forms_take_the_apps_own_options() -> None:
    """One table of options for both parsers: each option of a quick form is
    the app's option of the same parameter, with the same flags, taking a
    value or not as the app's does."""
    for name, form in FORMS.items():
        params = {param.name: param for param in _command(name).params}
        for param, flags in form.values.items():
            option = params[param]
            assert option.param_type_name == "option" and not option.is_flag and not option.multiple, (name, param)
            assert set(option.opts + option.secondary_opts) == set(flags), (name, param)
        for param, flags in form.switches.items():
            option = params[param]
            assert option.param_type_name == "option" and option.is_flag and not option.secondary_opts, (name, param)
            assert set(option.opts) == set(flags), (name, param)
        if form.names:
            argument = params[form.names]
            assert argument.param_type_name == "argument" and argument.nargs == -1


@pytest.mark.parametrize(("command", "function"), [("run", run), ("check", check)])
def test_both_paths_call_one_function_with_the_apps_defaults(command: str, function: object) -> None:
    """The quick form passes only what it was given: the function's defaults
    must be the app's."""
    defaults = {name: param.default for name, param in inspect.signature(function).parameters.items()}  # type: ignore[arg-type]
    app_params = {param.name: param.default for param in _command(command).params}
    assert set(defaults) == set(app_params)
    for name, default in defaults.items():
        assert app_params[name] == default or (default is None and app_params[name] in ((), None)), name


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["check"], ("check", {})),
        (["check", "-f", "a.toml", "--json"], ("check", {"file": "a.toml", "as_json": True})),
        (["check", "--file=a.toml", "-j", "auto", "--schedule", "longest-first"], ("check", {"file": "a.toml", "parallel": "auto", "schedule": "longest-first"})),
        (["run", "--plain", "web", "-j", "4", "worker"], ("run", {"plain_output": True, "parallel": "4", "names": ["web", "worker"]})),
        (["run", "--plain", "-f", "x.toml", "--", "-odd", "--json"], ("run", {"plain_output": True, "file": "x.toml", "names": ["-odd", "--json"]})),
        (["run", "--timeout", "10m", "--keep-going", "--no-watch", "--json"], ("run", {"timeout": "10m", "keep_going": True, "no_watch": True, "json_summary": True})),
        (["status", "--json", "-f", "a.toml"], ("status", {"as_json": True, "file": "a.toml"})),
    ],
)
def test_the_usual_forms_are_quick(argv: list[str], parsed: tuple[str, dict[str, object]]) -> None:
    assert parse(argv) == parsed


@pytest.mark.parametrize(
    "argv",
    [
        [], ["check", "-h"], ["check", "--help"], ["run", "--help"], ["check", "-j4"], ["check", "-f"], ["check", "-f", "-x"],
        ["check", "-f=a.toml"], ["check", "--file="], ["check", "--json", "--json"], ["check", "-f", "a", "--file", "b"],
        ["check", "web"], ["check", "--jsn"], ["check", "--json=1"], ["run", "--only", "web"], ["run", "--tail", "5"],
        ["run", "-j"], ["status"], ["status", "web", "--json"], ["logs", "web"], ["--version"], ["run", "-"],
    ],
)
def test_everything_else_goes_to_the_app(argv: list[str]) -> None:
    assert parse(argv) is None


def _procctl(project: Project, *args: str, app_only: bool = False, importtime: bool = False) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr, the modules imported) of procctl ARGS as
    its console script runs it — or with the quick forms turned off, as the
    app alone answered them before."""
    env = project.env()
    env.pop("COLUMNS")  # a page as CI logs and pipes have it
    code = "import sys, procctl.entry as entry; sys.argv[0] = 'procctl'; "
    if app_only:
        code += "entry._quick = lambda argv: None; "
    code += "entry.main()"
    done = subprocess.run(
        [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args],
        cwd=project.root, env=env, capture_output=True, text=True, timeout=120,
    )
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    stderr = "".join(line + "\n" for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return done.returncode, done.stdout, stderr, modules | {name.split(".")[0] for name in modules}


GOOD = """
    [settings]
    max_parallel = 2

    [process.db]
    cmd = "echo db up"

    [process.web]
    cmd = ["echo", "web on", "8000"]
    depends_on = ["db"]

    [process.job]
    cmd = "echo job {item}"
    each = ["a", "b", "c"]
    pool = true
"""

BROKEN = {
    "toml": "[process.web\ncmd = 'x'\n",
    "unknown key": "[process.web]\ncmd = 'x'\ncomand = 'y'\n",
    "cycle": "[process.a]\ncmd = 'x'\ndepends_on = ['b']\n[process.b]\ncmd = 'y'\ndepends_on = ['a']\n",
    "warning": "[process.t]\ncmd = 'echo {item}'\neach = { glob = 'nothing-here-*' }\n",
}


@pytest.mark.parametrize("args", [("check",), ("check", "--json"), ("check", "-j", "auto"), ("check", "-j", "0"), ("check", "--schedule", "random"), ("check", "-f", "missing.toml")])
def test_check_answers_as_the_app_did_without_loading_it(project: Project, args: tuple[str, ...]) -> None:
    project.write(GOOD)
    quick = _procctl(project, *args, importtime=True)
    assert quick[:3] == _procctl(project, *args, app_only=True)[:3]
    heavy = CHECK_HEAVY if "--json" in args else CHECK_HEAVY | {"json"}  # (the plan as text needs no JSON)
    assert not heavy & quick[3], heavy & quick[3]


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_manifest_is_the_same_line_and_code_on_both_paths(project: Project, broken: str) -> None:
    project.write(BROKEN[broken])
    for args in (("check",), ("run", "--plain")):
        quick, app_only = _procctl(project, *args), _procctl(project, *args, app_only=True)
        # (What a run prints on stdout says how long it took.)
        assert (quick[0], quick[2]) == (app_only[0], app_only[2]) and (args[0] == "run" or quick[1] == app_only[1]), args
        if broken != "warning":
            assert quick[0] == 2 and quick[2].startswith("procctl: ") and quick[2].count("\n") == 1, quick


def test_run_answers_as_the_app_did_without_loading_it(project: Project) -> None:
    project.write(GOOD)
    code, out, err, modules = _procctl(project, "run", "--plain", "web", importtime=True)
    assert code == 0 and "db      | db up" in out and "web     | web on 8000" in out and "job" not in out
    assert not {"typer", "click", "textual", "rich"} & modules, modules  # off a terminal, the summary too is written without rich
    app_code, app_out, _, _ = _procctl(project, "run", "--plain", "web", app_only=True)
    assert app_code == code
    # web starts once db has started: their lines may come in either order.
    assert sorted(line[9:] for line in app_out.splitlines() if "|" in line and "procctl |" not in line) == sorted(
        line[9:] for line in out.splitlines() if "|" in line and "procctl |" not in line
    )
    for args in (("run", "--plain", "nosuch"), ("run", "--plain", "-j", "x"), ("run", "--plain", "--timeout", "soon"), ("run", "--plain", "--schedule", "x")):
        quick = _procctl(project, *args)
        assert quick[0] == 2 and quick[:3] == _procctl(project, *args, app_only=True)[:3], args


RUN_LATER = {"psutil", "tempfile", "shutil", "secrets", "sqlite3", "procctl.engine.reload", "procctl.engine.ports"}
"""What `run` imports only when it first uses it (a metrics sample, a stop, a
grouped output's spool, pruning old logs, the history's first write, a reload, a tcp or http probe), not
with the modules of its path: psutil alone costs 7 ms before the first spawn."""


RUN_DATACLASSES = {"procctl.engine.outcome.Totals", "procctl.engine.outcome.InstanceResult", "procctl.engine.outcome.RunResult", "procctl.engine.pool._Waiter"}
"""The dataclasses `run` still makes at every start: the results it returns and
the pool's waiters (the events, the child's requests and exits, the usage
figures, the cgroups' records and the runs' mutable records are plain classes
or named tuples)."""


def test_the_modules_of_runs_path_load_psutil_and_tempfile_only_when_used(project: Project) -> None:
    # Whether a run itself touches psutil depends on the machine (a stale
    # cgroup of another run to sweep, a sample): what is checked is that
    # importing every procctl module a run imported does not load them.
    project.write(GOOD)
    code, _, _, modules = _procctl(project, "run", "--plain", "web", importtime=True)
    ours = sorted(name for name in modules if name.startswith("procctl."))
    assert code == 0 and "procctl.engine.supervisor" in ours and "procctl.ui.plain" in ours, ours
    probe = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\nprint(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", probe, *ours], capture_output=True, text=True, check=True, timeout=120).stdout.split())
    # What this interpreter loads before any of ours (a site-packages .pth may
    # import tempfile and shutil) is not procctl's doing.
    bare = set(subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"], capture_output=True, text=True, check=True, timeout=120).stdout.split())
    added = loaded - bare
    assert "procctl.engine.process" in added and not RUN_LATER & added, RUN_LATER & added
    # Each dataclass is code compiled at every start (~0.4 ms): the values
    # made on run's path are named tuples or plain classes.
    probe = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n" + (
        "print(' '.join(f'{v.__module__}.{v.__qualname__}' for m in list(sys.modules.values()) if m.__name__.startswith('procctl.')"
        " for v in vars(m).values() if isinstance(v, type) and '__dataclass_fields__' in vars(v) and v.__module__ == m.__name__))"
    )
    made = set(subprocess.run([sys.executable, "-c", probe, *ours], capture_output=True, text=True, check=True, timeout=120).stdout.split())
    assert made <= RUN_DATACLASSES, made - RUN_DATACLASSES


CTRL_C_WHILE_LOADING = """
import signal
import sys

# What a Ctrl-C in a terminal meets, even where the test runs in a
# background job (whose shell leaves SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)

import procctl.cli.quick
from procctl import entry

SOURCE = "pass\\n" * 200_000


def answer(argv):
    # Modules being loaded run code made from strings (dataclasses and named
    # tuples do): nearly all of this loop's time is spent compiling one, so
    # the Ctrl-C is taken as that code starts, as it was in `procctl run`.
    print("loading", flush=True)
    while True:
        exec(SOURCE)


procctl.cli.quick.answer = answer
sys.argv = ["procctl", "check"]
entry.main()
"""


def test_ctrl_c_while_modules_load_exits_130_with_one_line(tmp_path: Path) -> None:
    """CPython 3.11 ends its own process by SIGINT, once the program has
    ended, after a KeyboardInterrupt taken as code made from a string starts,
    even one caught: a Ctrl-C in the first tens of ms of `procctl run` gave
    -2 after "interrupted" (about half of the tries at 55-75 ms)."""
    script = tmp_path / "loading.py"
    script.write_text(CTRL_C_WHILE_LOADING)
    with subprocess.Popen([sys.executable, "-m", "loading"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"loading\n"
            os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert (proc.returncode, err) == (130, b"procctl: interrupted\n")
        finally:
            if proc.poll() is None:
                proc.kill()


def test_the_events_are_made_without_dataclasses() -> None:
    """Every kind of event is loaded before a run's first spawn; as dataclasses,
    the code made for them was compiled at every start (~8 ms of `run`'s)."""
    probe = "import sys\nbare = set(sys.modules)\nimport procctl.events, procctl.records\nprint(' '.join(set(sys.modules) - bare))"
    added = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120).stdout.split())
    assert "procctl.events" in added and "dataclasses" not in added, added


def test_the_head_start_begins_before_asyncio_is_loaded() -> None:
    """`run` starts its guardian and its move into the run's cgroup on a
    thread (engine/headstart.py), to overlap the imports that follow; what
    the thread needs is imported before it starts, so it must not load
    asyncio (~20 ms), the largest of those imports."""
    probe = "import sys\nfrom procctl.engine.headstart import HeadStart\nfrom procctl.engine.guardian import Guardian\nfrom procctl.engine.rungroup import RunGroup\nprint(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120).stdout.split())
    assert "procctl.engine.guardian" in loaded and "asyncio" not in loaded


FIRST_SPAWN_ORDER = """
import sys

import _posixsubprocess

seen = []
fork_exec = _posixsubprocess.fork_exec


def spawn(*args, **kwargs):
    if "first-child" in repr(args[0]):
        seen.append("spawn")
    return fork_exec(*args, **kwargs)


def hook(event, args):
    if event == "import" and args[0] == "ctypes":
        seen.append("ctypes")


_posixsubprocess.fork_exec = spawn
sys.addaudithook(hook)
sys.argv = ["procctl", "run", "--plain"]
from procctl.entry import main

try:
    main()
finally:
    sys.stderr.write(" ".join(seen) + "\\n")
"""


def test_the_heap_is_set_up_once_the_first_child_started(project: Project) -> None:
    """The supervisor's heap settings (`loop._steady_heap`, through ctypes)
    wait for the first child's start: they matter once output flows."""
    project.write('[process.one]\ncmd = ["sh", "-c", "echo started", "first-child"]\n')
    done = subprocess.run([sys.executable, "-c", FIRST_SPAWN_ORDER], cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "started" in done.stdout, done
    assert done.stderr.splitlines()[-1] == "spawn ctypes", done.stderr

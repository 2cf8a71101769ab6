"""The plan: expansion, substitution and order; and the manifests we write."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.config.writer import manifest_from_procfile, starter_manifest
from procctl.errors import ManifestError, UsageError


def _plan(tmp_path: Path, text: str, parallel: int | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "procfile.toml"
    path.write_text(text)
    return build_plan(load_manifest(path), parallel=parallel)


def test_items_are_shell_quoted_and_other_braces_kept(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        """
[process.t]
cmd = "printf '%s|' {item} {index}; awk 'BEGIN {print \\"x\\"}'; echo ${HOME:+home}"
each = ["a b", "$(touch pwned)", "; rm -rf /", "it's"]
""",
    )
    assert [job.name for job in plan.jobs] == ["t[1]", "t[2]", "t[3]", "t[4]"]
    outputs = [subprocess.run(["sh", "-c", job.cmd], cwd=tmp_path, capture_output=True, text=True).stdout for job in plan.jobs]
    assert outputs[0].startswith("a b|1|x\n")
    assert outputs[1].startswith("$(touch pwned)|2|")
    assert outputs[2].startswith("; rm -rf /|3|")
    assert outputs[3].startswith("it's|4|")
    assert not (tmp_path / "pwned").exists()
    assert plan.jobs[0].env["PROCCTL_ITEM"] == "a b" and plan.jobs[0].log_name == "t.1.log"


def test_list_commands_substitute_without_quoting(tmp_path: Path) -> None:
    plan = _plan(tmp_path, '[process.t]\ncmd = ["echo", "{item}", "{port}"]\neach = { range = [3, 4] }\nport = 80\n')
    assert [job.cmd for job in plan.jobs] == [("echo", "3", "80"), ("echo", "4", "80")]


def test_order_levels_and_pool(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        """
[settings]
max_parallel = 3
[process.web]
cmd = "w"
depends_on = ["api"]
[process.api]
cmd = "a"
depends_on = { db = "ready" }
[process.db]
cmd = "d"
[process.side]
cmd = "s"
""",
    )
    assert plan.order == ("db", "side", "api", "web")
    assert dict(plan.levels) == {"db": 0, "side": 0, "api": 1, "web": 2}
    assert plan.max_parallel == 3
    assert _plan(tmp_path, '[process.a]\ncmd = "x"\n', parallel=7).max_parallel == 7
    with pytest.raises(UsageError):
        _plan(tmp_path, '[process.a]\ncmd = "x"\n', parallel=0)


def test_starter_manifest_loads(tmp_path: Path) -> None:
    path = tmp_path / "procfile.toml"
    path.write_text(starter_manifest())
    plan = build_plan(load_manifest(path))
    assert {"server", "smoke", "jobs"} == set(plan.order)


def test_procfile_import_round_trip(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: gunicorn app:app --bind 0.0.0.0:$PORT\nworker: celery -A tasks worker\n")
    env = tmp_path / ".env"
    env.write_text("SECRET='s p a c e'\nDEBUG=1\n")
    out = tmp_path / "procfile.toml"
    text = manifest_from_procfile(procfile, env, out)
    # The .env is named, not copied: its values (often secrets) stay out of a file meant to be committed.
    assert "SECRET" not in text and "s p a c e" not in text
    out.write_text(text)
    manifest = load_manifest(out)
    assert manifest.settings.env_file == env
    assert manifest.processes["web"].cmd == "gunicorn app:app --bind 0.0.0.0:$PORT"
    assert manifest.processes["worker"].cmd == "celery -A tasks worker"
    assert manifest.env == {"SECRET": "s p a c e", "DEBUG": "1"}
    assert [p.port for p in manifest.processes.values()] == [5000, 5100]
    procfile.write_text("no colon here\n")
    with pytest.raises(ManifestError, match="Procfile:1: expected 'name: command'"):
        manifest_from_procfile(procfile, None, out)


def test_one_resolver_for_process_and_instance_names() -> None:
    from procctl.config.select import resolve
    from procctl.errors import UsageError

    processes = {"web": ["web.1", "web.2"], "db": ["db"], "jobs": []}
    instances = {"web.1": "web.1", "web.2": "web.2", "db": "db"}
    assert resolve(["web.2", "web", "db", "web.1"], processes, instances) == ["web.2", "web.1", "db"]
    assert resolve(["jobs"], processes, instances) == []  # a process with no instance now
    with pytest.raises(UsageError, match=r"^unknown process or instance 'wbe' \(did you mean 'web'\?\); known processes: web, db, jobs$"):
        resolve(["wbe"], processes, instances)
    with pytest.raises(UsageError, match=r"^unknown process 'web.1' \(did you mean 'web'\?\); known processes: web, db, jobs$"):
        resolve(["web.1"], processes)


def test_dependency_levels_come_from_one_walk_and_a_cycle_is_named_from_its_first_process(tmp_path: Path) -> None:
    import graphlib

    from procctl.config.plan import cycle_of, dependency_levels

    path = tmp_path / "procfile.toml"
    path.write_text('[process.app]\ncmd = "x"\ndepends_on = ["db", "cache"]\n[process.db]\ncmd = "y"\n[process.cache]\ncmd = "z"\ndepends_on = ["db"]\n')
    processes = load_manifest(path).processes
    assert dependency_levels(processes) == {"db": 0, "cache": 1, "app": 2}
    assert build_plan(load_manifest(path)).order == ("db", "cache", "app")
    looped = {**processes, "db": processes["db"]._replace(depends_on={"app": "started"})}
    with pytest.raises(graphlib.CycleError) as caught:
        dependency_levels(looped)
    assert cycle_of(caught.value, looped) in (["app", "db", "app"], ["app", "cache", "db", "app"])

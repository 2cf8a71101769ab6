"""The plan of a reload: what the edited manifest starts, stops, restarts and keeps."""

from __future__ import annotations

import textwrap
from pathlib import Path

from procctl.config.loader import load_manifest
from procctl.config.plan import Plan, build_plan
from procctl.engine.reload import Current, ReloadPlan, plan_reload


def _plan(tmp_path: Path, text: str) -> Plan:
    path = tmp_path / "procfile.toml"
    path.write_text(textwrap.dedent(text))
    return build_plan(load_manifest(path), parallel=2)


def _reload(tmp_path: Path, before: str, after: str, *, ended: set[str] = frozenset(), current: Plan | None = None) -> ReloadPlan:
    running = _plan(tmp_path, before)
    now = current or running
    instances: dict[str, list[Current]] = {}
    for job in now.jobs:
        instances.setdefault(job.process, []).append(Current(job.name, job, job.name in ended))
    return plan_reload(running, instances, _plan(tmp_path, after))


def _steps(reload: ReloadPlan) -> dict[str, dict[str, object]]:
    return {step.process: step.record() for step in reload.steps}


BASE = """
    [env]
    SHARED = "1"

    [process.db]
    cmd = "sleep 100"

    [process.web]
    cmd = "sleep 200"
    depends_on = ["db"]

    [process.old]
    cmd = "sleep 300"
"""


def test_added_removed_changed_and_unchanged_processes(tmp_path: Path) -> None:
    after = """
        [env]
        SHARED = "1"

        [process.db]
        cmd = "sleep 100"

        [process.web]
        cmd = "sleep 201"
        depends_on = ["db"]

        [process.new]
        cmd = "sleep 400"
    """
    steps = _steps(_reload(tmp_path, BASE, after))
    assert steps["db"]["action"] == "unchanged" and steps["db"]["kept"] == ["db"]
    assert steps["web"]["action"] == "restarted" and steps["web"]["changes"] == ["cmd"] and steps["web"]["restarted"] == ["web"]
    assert steps["new"]["action"] == "added" and steps["new"]["started"] == ["new"]
    assert steps["old"]["action"] == "removed" and steps["old"]["stopped"] == ["old"]


def test_a_change_of_the_shared_env_restarts_every_process_it_reaches(tmp_path: Path) -> None:
    steps = _steps(_reload(tmp_path, BASE, BASE.replace('SHARED = "1"', 'SHARED = "2"')))
    assert {name: step["action"] for name, step in steps.items()} == {"db": "restarted", "web": "restarted", "old": "restarted"}
    assert steps["db"]["changes"] == ["env"]


def test_the_env_files_contents_count(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("A=1\n")
    text = BASE.replace('depends_on = ["db"]', 'depends_on = ["db"]\n    env_file = "web.env"')
    running = _plan(tmp_path, text)
    (tmp_path / "web.env").write_text("A=2\n")
    current = {job.process: [Current(job.name, job, False)] for job in running.jobs}
    steps = _steps(plan_reload(running, current, _plan(tmp_path, text)))
    assert steps["web"]["action"] == "restarted" and steps["web"]["changes"] == ["env"]
    assert steps["db"]["action"] == "unchanged"


def test_dependencies_and_lines_alone_restart_nothing(tmp_path: Path) -> None:
    after = "\n# a comment that moves every line\n" + BASE.replace('depends_on = ["db"]', "depends_on = []")
    steps = _steps(_reload(tmp_path, BASE, after))
    assert steps["web"]["action"] == "updated" and steps["web"]["changes"] == ["depends_on"] and steps["web"]["restarted"] == []
    assert steps["db"]["action"] == "unchanged"


def test_replicas_scale_and_keep_the_others(tmp_path: Path) -> None:
    before = '[process.web]\ncmd = "sleep 1"\nport = 7000\n'
    steps = _steps(_reload(tmp_path, before, before + "replicas = 3\n"))
    assert steps["web"] == {
        "process": "web", "action": "scaled", "changes": ["replicas"], "started": ["web.2", "web.3"], "stopped": [], "restarted": [], "kept": ["web"],
    }  # fmt: skip
    down = _steps(_reload(tmp_path, before + "replicas = 3\n", before + "replicas = 2\n"))
    assert down["web"]["stopped"] == ["web.3"] and down["web"]["kept"] == ["web.1", "web.2"]


def test_a_scaled_count_stands_unless_replicas_was_edited(tmp_path: Path) -> None:
    before = '[process.web]\ncmd = "sleep 1"\nreplicas = 2\n'
    scaled = _plan(tmp_path, before.replace("replicas = 2", "replicas = 4"))
    steps = _steps(_reload(tmp_path, before, before + 'env = { A = "1" }\n', current=scaled))
    assert steps["web"]["restarted"] == ["web.1", "web.2", "web.3", "web.4"] and steps["web"]["started"] == []


def test_each_items_are_matched_by_item(tmp_path: Path) -> None:
    before = '[process.thumb]\ncmd = "echo {item}"\neach = ["a", "b", "c"]\n'
    reload = _reload(tmp_path, before, before.replace('["a", "b", "c"]', '["b", "c", "d"]'), ended={"thumb[1]", "thumb[2]"})
    steps = _steps(reload)
    assert steps["thumb"]["action"] == "scaled" and steps["thumb"]["changes"] == ["each"]
    assert steps["thumb"]["stopped"] == ["thumb[1]"] and steps["thumb"]["kept"] == ["thumb[2]", "thumb[3]"]
    (started,) = reload.steps[0].start
    assert started.name == "thumb[4]" and started.item == "d" and started.log_name == "thumb.4.log"


def test_a_changed_each_process_runs_every_item_again(tmp_path: Path) -> None:
    before = '[process.thumb]\ncmd = "echo {item}"\neach = ["a", "b"]\n'
    steps = _steps(_reload(tmp_path, before, before.replace("echo", "printf"), ended={"thumb[1]", "thumb[2]"}))
    assert steps["thumb"]["restarted"] == ["thumb[1]", "thumb[2]"] and steps["thumb"]["changes"] == ["cmd"]


def test_settings_applied_and_a_region_that_cannot_be_resized(tmp_path: Path) -> None:
    before = '[settings]\nstop_timeout = "5s"\n[shared.table]\nsize = "4KiB"\n[process.web]\ncmd = "sleep 1"\nshared = ["table"]\n'
    reload = _reload(tmp_path, before, before.replace('"5s"', '"2s"').replace('"4KiB"', '"8KiB"'))
    assert reload.settings == ["stop_timeout 5s → 2s"]
    assert len(reload.notes) == 1 and "'table' keeps its size of 4,096 bytes" in reload.notes[0]
    assert _steps(reload)["web"]["action"] == "unchanged"


def test_nothing_changed(tmp_path: Path) -> None:
    reload = _reload(tmp_path, BASE, BASE)
    assert not reload.changes_anything

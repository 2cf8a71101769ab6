"""Where jobs run: `executor` per process, `[settings] dask`, `run
--executor` for one run, and the items `--rerun-failed` keeps."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from procctl.config.executors import cluster_address, scheduler_address, uses_dask, with_executor
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.errors import ManifestError, UsageError

POOL = """
[settings]
dask = { scheduler = "dask://head.example:8786" }

[process.db]
cmd = "sleep 60"

[process.thumb]
cmd = "convert {item} out/{item}.png"
each = ["a.jpg", "b.jpg", "c.jpg"]
executor = "dask"
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "procfile.toml"
    path.write_text(textwrap.dedent(text))
    return load_manifest(path)


def test_a_process_chooses_its_executor_and_settings_name_the_cluster(tmp_path: Path) -> None:
    manifest = load(tmp_path, POOL)
    assert manifest.processes["thumb"].executor == "dask" and manifest.processes["db"].executor == "local"
    assert cluster_address(manifest) == "tcp://head.example:8786"
    assert [spec.name for spec in uses_dask(manifest)] == ["thumb"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[process.a]\ncmd = "x"\nexecutor = "dask"\n', ":3: process.a.executor: a Dask cluster runs `each` jobs"),
        ('[process.a]\ncmd = "x"\neach = [1]\nexecutor = "dusk"\n', "process.a.executor: expected \"local\" or \"dask\", got 'dusk' (did you mean 'dask'?)"),
        (
            '[process.a]\ncmd = "x"\neach = [1]\nready = { tcp = "127.0.0.1:9" }\nexecutor = "dask"\n',
            "process.a.ready: a tcp probe runs on this machine, not where the job runs",
        ),
        ('[process.a]\ncmd = "x"\neach = [1]\nwatchdog = "5s"\nexecutor = "dask"\n', "process.a.watchdog: the notification socket is on this machine only"),
        ('[process.a]\ncmd = "x"\neach = [1]\nliveness = { tcp = "127.0.0.1:9" }\nexecutor = "dask"\n', "process.a.liveness: a tcp liveness probe runs on this machine"),
        ('[shared.t]\nsize = "1MiB"\n[process.a]\ncmd = "x"\neach = [1]\nshared = ["t"]\nexecutor = "dask"\n', "process.a.shared: shared memory regions"),
        ('[settings]\ndask = { scheduler = "head:8786" }\n[process.a]\ncmd = "x"\n', "settings.dask.scheduler: expected a scheduler address dask://HOST:PORT"),
        ('[settings]\ndask = { address = "tcp://h:1" }\n[process.a]\ncmd = "x"\n', "settings.dask.address: unknown key"),
        ('[settings]\ndask = { scheduler = "tcp://h:99999" }\n[process.a]\ncmd = "x"\n', "settings.dask.scheduler: expected a scheduler address"),
    ],
)
def test_what_a_cluster_cannot_run_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ManifestError) as error:
        load(tmp_path, text)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("given", "address"),
    [("dask://127.0.0.1:8786", "tcp://127.0.0.1:8786"), ("tcp://node-3.cluster:9000/", "tcp://node-3.cluster:9000"), ("tls://[::1]:8786", "tls://[::1]:8786")],
)
def test_scheduler_addresses(given: str, address: str) -> None:
    assert scheduler_address(given) == address


@pytest.mark.parametrize("bad", ["127.0.0.1:8786", "http://h:1", "dask://h", "dask://h:0", "dask://h:1/x", "dask://a b:1"])
def test_bad_scheduler_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a scheduler address"):
        scheduler_address(bad)


def test_run_executor_overrides_the_manifest_for_one_run(tmp_path: Path) -> None:
    manifest = load(tmp_path, POOL.replace('executor = "dask"\n', ""))
    assert uses_dask(manifest) == []
    on_cluster = with_executor(manifest, "dask://10.1.2.3:8786")
    assert [spec.name for spec in uses_dask(on_cluster)] == ["thumb"]  # services stay here
    assert cluster_address(on_cluster) == "tcp://10.1.2.3:8786"
    assert [spec.name for spec in uses_dask(with_executor(manifest, "dask"))] == ["thumb"]
    assert uses_dask(with_executor(load(tmp_path, POOL), "local")) == []
    assert with_executor(manifest, None) is manifest


def test_run_executor_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--executor: expected a scheduler address"):
        with_executor(load(tmp_path, POOL), "somewhere")
    with pytest.raises(UsageError, match="no `each` process in this run"):
        with_executor(load(tmp_path, '[process.a]\ncmd = "x"\n'), "dask://h:1")
    with pytest.raises(UsageError, match="process.a.ready: a http probe"):
        with_executor(load(tmp_path, '[process.a]\ncmd = "x"\neach = [1]\nready = { http = "http://127.0.0.1:1/" }\n'), "dask://h:1")
    no_cluster = load(tmp_path, '[process.a]\ncmd = "x"\neach = [1]\nexecutor = "dask"\n')
    with pytest.raises(UsageError, match=r'a: executor = "dask" needs a scheduler: \[settings\] dask'):
        cluster_address(no_cluster)


def test_only_items_keeps_each_item_under_its_own_index(tmp_path: Path) -> None:
    """--rerun-failed runs b.jpg as thumb[2], as it was: its log and its
    history rows stay those of the same instance."""
    manifest = load(tmp_path, POOL)
    plan = build_plan(manifest, only_items={"thumb": {"b.jpg"}})
    assert [job.name for job in plan.jobs] == ["db", "thumb[2]"]
    assert plan.jobs[1].item == "b.jpg" and plan.jobs[1].log_name == "thumb.2.log"
    assert [job.name for job in build_plan(manifest, only_items={"thumb": set()}).jobs] == ["db"]

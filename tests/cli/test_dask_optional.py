"""Dask is an optional extra (`procctl[dask]`): imported only when a run uses
a cluster, and without it `executor = "dask"` is one line naming the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Project

EXTRA_MISSING = (
    "procctl: executor = \"dask\" needs Dask's distributed scheduler, which is not installed (distributed): pip install 'procctl[dask]'\n"
)


def _without_dask(tmp_path: Path) -> dict[str, str]:
    """An environment where `import distributed` fails as it does where the
    extra is not installed (a package of that name first on the path that
    raises the same error)."""
    stub = tmp_path / "no-dask" / "distributed"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n")
    return {"PYTHONPATH": str(stub.parent)}


DASK_MODULES = ("dask", "distributed", "tornado", "cloudpickle", "msgpack", "procctl.cluster.executor", "procctl.cluster.remote",
                "procctl.cluster.worker", "procctl.cluster.job", "procctl.cluster.local")
"""Dask, what only Dask brings in, and procctl's modules of a cluster (a local run needs none of them)."""


def _dask_imported(project: Project, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`procctl ARGS` under `-X importtime`: its result, and which of DASK_MODULES it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "procctl", *args], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    names = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "procctl" in names, done.stderr[-2000:]
    return done, {module for module in DASK_MODULES if any(name == module or name.startswith(module + ".") for name in names)}


def test_local_runs_and_status_never_import_dask(project: Project) -> None:
    """A manifest with a cluster in its settings and a process sent there:
    1. `run --plain` of the local processes, and `run --plain --executor
       local` of all of them, run (exit 0) without importing Dask;
    2. so does `check`;
    3. with a supervisor running, `status --json` and the status table
       answer without importing it."""
    project.write(
        """
        [settings]
        dask = { scheduler = "tcp://127.0.0.1:9" }

        [process.b]
        cmd = "echo hi"

        [process.e]
        cmd = "echo {item}"
        each = [1, 2]

        [process.remote]
        cmd = "echo {item}"
        each = [1, 2]
        executor = "dask"

        [process.a]
        cmd = "sleep 60"
        """
    )
    for args in (("run", "--plain", "b", "e"), ("run", "--plain", "--executor", "local", "b", "e", "remote"), ("check",)):
        done, dask = _dask_imported(project, *args)
        assert (done.returncode, dask) == (0, set()), (args, done.stderr[-2000:])
    assert (project.logs / "remote.2.log").read_text() == "2\n"  # --executor local ran the cluster's jobs here
    supervisor = project.supervise("--plain", "a")
    try:
        for args in (("status", "--json"), ("status",)):
            done, dask = _dask_imported(project, *args)
            assert (done.returncode, dask) == (0, set()), (args, done.stderr[-2000:])
            assert " a " in done.stdout or '"a"' in done.stdout
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=30)


def test_without_the_extra_a_dask_executor_is_one_line_naming_it(project: Project, tmp_path: Path) -> None:
    """1. executor = "dask" in the manifest: exit 2, one line naming the
       extra, nothing started (the job would have left a file).
    2. The same for `run --executor dask://…` and for `procctl cluster up`."""
    project.write(
        """
        [settings]
        dask = { scheduler = "tcp://127.0.0.1:8786" }

        [process.job]
        cmd = "touch ran-{item}"
        each = [1, 2]
        executor = "dask"
        """
    )
    env = _without_dask(tmp_path)
    result = project.run("run", "--plain", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", EXTRA_MISSING)
    assert not list(project.root.glob("ran-*"))
    override = project.run("run", "--plain", "--executor", "dask://127.0.0.1:8786", env=env)
    assert (override.returncode, override.stderr) == (2, EXTRA_MISSING)
    cluster = project.run("cluster", "up", "--port", "0", env=env)
    assert cluster.returncode == 2 and "Traceback" not in cluster.stderr
    assert cluster.stderr == "procctl: procctl cluster needs Dask's distributed scheduler, which is not installed (distributed): pip install 'procctl[dask]'\n"
    # `check` validates the manifest without the extra.
    assert project.run("check", env=env).returncode == 0


def test_cluster_up_listens_where_the_manifest_says_its_scheduler_is(tmp_path: Path) -> None:
    """Without --port: the port of a `[settings] dask` scheduler on 127.0.0.1, else 8786."""
    from procctl.cli.cluster import DEFAULT_PORT, _manifest_port

    here = tmp_path / "procfile.toml"
    here.write_text('[settings]\ndask = { scheduler = "dask://127.0.0.1:9911" }\n[process.a]\ncmd = "x"\n')
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text('[settings]\ndask = { scheduler = "tcp://10.0.0.1:9911" }\n[process.a]\ncmd = "x"\n')
    assert (_manifest_port(here), _manifest_port(elsewhere), DEFAULT_PORT) == (9911, 8786, 8786)

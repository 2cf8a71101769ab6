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


def test_local_runs_never_import_dask(project: Project) -> None:
    project.write('[process.b]\ncmd = "echo hi"\n[process.e]\ncmd = "echo {item}"\neach = [1, 2]\n')
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "procctl", "run", "--plain"], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    modules = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 0 and "procctl" in modules
    assert not {"dask", "distributed", "tornado"} & modules


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

"""What a user installs: the wheel built and installed into a fresh virtual
environment (not editable) runs, carries its metadata, the demo and the man
page; and on a system that is not Linux the command line refuses at once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import procctl
from procctl.config.writer import REPOSITORY

ROOT = Path(__file__).resolve().parents[2]

# Stands in for another system: sys.platform is set before procctl is
# imported, then the console script's entry point runs with the given argv.
# What it prints last is which heavy modules were imported by then.
_FOREIGN = """
import json, sys
sys.platform = {platform!r}
sys.argv = ["procctl", *{argv!r}]
from procctl.entry import main
try:
    main()
finally:
    heavy = ("typer", "rich", "psutil", "asyncio", "procctl.cli", "procctl.engine", "procctl.config")
    print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.parametrize("platform", ["darwin", "freebsd14", "win32"])
@pytest.mark.parametrize("argv", [["check"], ["run"], ["--version"], ["status", "--json"]])
def test_not_linux_is_refused_in_one_line_before_anything_heavy(platform: str, argv: list[str], tmp_path: Path) -> None:
    """1. The entry point runs with sys.platform set to another system's.
    2. One line on stderr names the system and what procctl needs of Linux; exit 2.
    3. Nothing heavy was imported: neither typer, rich, psutil nor asyncio,
       nor any procctl module that would need Linux."""
    done = subprocess.run(
        [sys.executable, "-c", _FOREIGN.format(platform=platform, argv=argv)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"procctl: this system is {platform}, not Linux: procctl needs /proc, pidfd, SO_PEERCRED and cgroups, which only Linux has\n"
    )
    assert json.loads(done.stdout) == []


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.slow
def test_the_wheel_installs_and_runs_from_a_fresh_venv(tmp_path: Path) -> None:
    """1. `pip wheel --no-deps` builds the wheel from the source tree.
    2. It installs, with its dependencies, into a fresh venv (not editable):
       the procctl imported there is the venv's copy.
    3. `procctl --version` answers; `procctl init --example` writes the demo,
       the same files as examples/, and `procctl check` passes on it.
    4. The man page is at the venv's share/man/man1/procctl.1, where man
       finds it from PATH; the metadata says Linux, MIT and the licence file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PROCCTL"))}
    dist, venv, demo = tmp_path / "dist", tmp_path / "venv", tmp_path / "demo"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)], tmp_path, env)
    (wheel,) = dist.glob("procctl-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python, binary = venv / "bin" / "python", venv / "bin" / "procctl"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)

    where = _run([str(python), "-c", "import procctl; print(procctl.__file__)"], tmp_path, env).stdout.strip()
    assert Path(where).is_relative_to(venv) and "site-packages" in where
    assert _run([str(binary), "--version"], tmp_path, env).stdout.strip() == f"procctl {procctl.__version__}"

    demo.mkdir()
    _run([str(binary), "init", "--example"], demo, env)
    shipped = sorted(p.name for p in (ROOT / "examples").iterdir() if p.suffix in (".toml", ".py"))
    assert sorted(p.name for p in demo.iterdir()) == shipped
    for name in shipped:
        assert (demo / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), name
    check = _run([str(binary), "check"], demo, env)
    assert "valid; 4 processes" in check.stdout

    page = venv / "share" / "man" / "man1" / "procctl.1"
    assert page.read_bytes() == (ROOT / "man" / "procctl.1").read_bytes()
    if shutil.which("man"):
        path_env = {**env, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
        path_env.pop("MANPATH", None)
        found = _run(["man", "-w", "procctl"], tmp_path, path_env).stdout.strip()
        assert Path(found) == page

    metadata = json.loads(_run([str(python), "-c", _METADATA], tmp_path, env).stdout)
    assert "Operating System :: POSIX :: Linux" in metadata["classifiers"]
    assert "Environment :: Console" in metadata["classifiers"]
    assert metadata["license"] == "MIT" and "MIT License" in metadata["license_text"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(metadata["urls"])
    assert metadata["author"] == "procctl developers" and metadata["keywords"]
    assert metadata["readme"].startswith("# procctl")


_METADATA = """
import json
from importlib import metadata
dist = metadata.distribution("procctl")
meta = dist.metadata
print(json.dumps({
    "classifiers": meta.get_all("Classifier"),
    "license": meta["License-Expression"],
    "license_text": dist.read_text("licenses/LICENSE"),
    "urls": [url.split(",")[0] for url in meta.get_all("Project-URL")],
    "author": meta["Author"],
    "keywords": meta["Keywords"],
    "readme": meta.get_payload(),
}))
"""


def test_readme_works_off_the_repository() -> None:
    """The README is the package index's page too: its first screen has the
    development commands and `pipx install procctl` beside them, every link
    is absolute, and the repository's address is the one [project.urls] and
    the starter manifest give."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Homepage"] == project["urls"]["Source"] == REPOSITORY
    assert all(url.startswith(REPOSITORY) for url in project["urls"].values())
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:24])
    assert "pip install -e ." in first_screen and "pipx install procctl" in first_screen
    assert "procctl init --example" in first_screen and "Linux only" in first_screen
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links and all(link.startswith(REPOSITORY) for link in links), links
    assert "man procctl" in readme

"""engine.forkexec against subprocess.Popen, with real children: the same
environment, PATH lookup, descriptors and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from procctl.engine import forkexec

@pytest.fixture(params=["fork_exec", "Popen"], autouse=True)
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test both ways: CPython 3.11's own fork and exec, and the
    `subprocess.Popen` any other Python uses."""
    if request.param == "Popen":
        monkeypatch.setattr(forkexec, "DIRECT", False)
    yield str(request.param)
    # Every child started through Popen was reaped and let go of.
    assert not forkexec._held


ENV_DUMP = "import json, os, sys; json.dump(dict(os.environ), sys.stdout)"


def _run(argv: list[str], env: dict[str, str], cwd: Path, pass_fds: tuple[int, ...] = ()) -> tuple[int, bytes]:
    """Spawn with forkexec, its stdout through a pipe: (exit code, output)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = forkexec.spawn(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=subprocess.DEVNULL, pass_fds=pass_fds)
    finally:
        os.close(out_w)
    chunks = []
    while chunk := os.read(out_r, 65536):
        chunks.append(chunk)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    forkexec.forget(pid, os.waitstatus_to_exitcode(status))
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def test_the_child_gets_exactly_its_environment_each_time(tmp_path: Path) -> None:
    """The whole environment, as given; a value changed under the same name
    (the encodings are kept between spawns) is the new one."""
    import json

    env = {"PATH": os.environ["PATH"], "ONE": "1", "WIDE": "é ü"}
    code, out = _run([sys.executable, "-c", ENV_DUMP], env, tmp_path)
    assert code == 0 and {k: v for k, v in json.loads(out).items() if k != "LC_CTYPE"} == env
    env["ONE"] = "".join(["un", "o"])  # a new object of the same name
    code, out = _run([sys.executable, "-c", ENV_DUMP], env, tmp_path)
    assert json.loads(out)["ONE"] == "uno"


def test_a_bare_command_is_looked_up_on_the_childs_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "only-here"
    tool.write_text("#!/bin/sh\necho found me\n")
    tool.chmod(0o755)
    assert _run(["only-here"], {"PATH": f"/nonexistent:{bin_dir}"}, tmp_path) == (0, b"found me\n")


def test_only_the_passed_descriptors_are_inherited(tmp_path: Path) -> None:
    keep_r, keep_w = os.pipe()
    other_r, other_w = os.pipe()
    os.set_inheritable(keep_w, True)
    os.set_inheritable(other_w, True)
    try:
        script = f"import os\nfor fd in ({keep_w}, {other_w}):\n    try:\n        os.fstat(fd); print(fd, 'open')\n    except OSError:\n        print(fd, 'closed')\n"
        code, out = _run([sys.executable, "-c", script], dict(os.environ), tmp_path, pass_fds=(keep_w,))
    finally:
        for fd in (keep_r, keep_w, other_r, other_w):
            os.close(fd)
    assert code == 0 and out.decode().split("\n")[:2] == [f"{keep_w} open", f"{other_w} closed"]


def _fails(**kwargs: object) -> BaseException:
    with pytest.raises(BaseException) as caught:
        pid = forkexec.spawn(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[arg-type]
        os.waitpid(pid, 0)
    return caught.value


def _popen_fails(argv: list[str], cwd: str, env: dict[str, str], preexec_fn: object = None) -> BaseException:
    with pytest.raises(BaseException) as caught:
        subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec_fn).wait()  # type: ignore[arg-type]
    return caught.value


def _boom() -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("case", ["missing", "missing-path", "not-executable", "directory", "no-cwd", "preexec", "bad-name"])
def test_a_failed_start_raises_what_popen_raises(tmp_path: Path, case: str) -> None:
    """Type, errno, file name and text, exactly: SpawnError's one lines are
    made from them."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    env = dict(os.environ)
    argv, cwd, preexec = {
        "missing": (["definitely-not-a-command-xyz"], tmp_path, None),
        "missing-path": ([str(tmp_path / "nope")], tmp_path, None),
        "not-executable": ([str(script)], tmp_path, None),
        "directory": ([str(tmp_path)], tmp_path, None),
        "no-cwd": (["true"], tmp_path / "gone", None),
        "preexec": (["true"], tmp_path, _boom),
        "bad-name": (["true"], tmp_path, None),
    }[case]
    if case == "bad-name":
        env["A=B"] = "1"
    ours = _fails(argv=argv, cwd=str(cwd), env=env, preexec_fn=preexec)
    theirs = _popen_fails(argv, str(cwd), env, preexec)
    assert type(ours) is type(theirs) and str(ours) == str(theirs)
    if isinstance(theirs, OSError):
        assert isinstance(ours, OSError) and (ours.errno, ours.filename) == (theirs.errno, theirs.filename)

"""The cgroup layer on the real kernel interface: finding this process's
groups, making and removing instance groups, a child joining its group
before exec, and the sweep of groups a dead supervisor left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from procctl.config.manifest import Limits
from procctl.engine import cgroups, limits


def _proc_dir(tmp_path: Path, cgroup: str, mountinfo: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    return proc


def test_locate_maps_v1_memberships_through_a_mount_of_a_subtree(tmp_path: Path) -> None:
    # A container's view: the memory hierarchy mounted from /docker/abc down.
    proc = _proc_dir(
        tmp_path,
        "4:memory:/docker/abc/app\n1:cpu,cpuacct:/docker/abc\n0::/\n",
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "36 31 0:33 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        "37 31 0:34 /other /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n",
    )
    found = cgroups.locate(("memory", "cpu", "pids"), proc=proc)
    assert found == {
        "memory": cgroups.Hierarchy(1, Path("/sys/fs/cgroup/memory/app")),
        "cpu": cgroups.Hierarchy(1, Path("/sys/fs/cgroup/cpu,cpuacct")),
    }


def test_locate_prefers_v2_where_its_group_offers_the_controller(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "user" / "app").mkdir(parents=True)
    (mount / "user" / "app" / "cgroup.controllers").write_text("cpu io memory pids\n")
    proc = _proc_dir(
        tmp_path,
        "0::/user/app\n",
        f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n",
    )
    assert cgroups.locate(proc=proc) == {
        "memory": cgroups.Hierarchy(2, mount / "user" / "app"),
        "cpu": cgroups.Hierarchy(2, mount / "user" / "app"),
    }


def _host_for(controller: str) -> cgroups.Host:
    host = cgroups.Host.create((controller,))
    if host is None:
        pytest.skip(f"this machine gives no cgroup with the {controller} controller")
    return host


@pytest.fixture
def hugetlb_host() -> Iterator[cgroups.Host]:
    """A host on the cgroup2 hierarchy through a controller it offers here
    (memory and cpu may be bound to v1 on this machine)."""
    host = _host_for("hugetlb")
    try:
        yield host
    finally:
        host.close()


def test_a_child_joins_its_group_before_exec_and_the_group_goes_with_the_host(hugetlb_host: cgroups.Host) -> None:
    group = hugetlb_host.group("thumb[7]", {"hugetlb"})
    fds = group.open_procs()
    try:
        # The child reads its own membership as its first act after exec.
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; print(open('/proc/self/cgroup').read() + 'end', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=limits.preexec(Limits(), None, fds),
        )
    finally:
        for fd in fds:
            os.close(fd)
    try:
        assert child.stdout is not None
        membership = "".join(iter(child.stdout.readline, "end\n"))
        directory = group.dirs["hugetlb"]
        assert directory.name == "1-thumb_7_"
        assert f"/{directory.parent.name}/{directory.name}" in membership
        assert (directory / "cgroup.procs").read_text().split() == [str(child.pid)]
        assert not group.remove(), "a group holding a process cannot be removed"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    base = directory.parent
    hugetlb_host.close()
    assert not directory.exists() and not base.exists()


def test_a_new_host_sweeps_the_groups_of_a_dead_supervisor() -> None:
    host = _host_for("memory")
    try:
        parent = next(iter(host.bases.values())).parent
    finally:
        host.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = parent / f"{cgroups.GROUP_PREFIX}{dead.pid}"
    (stale / "1-web").mkdir(parents=True)
    try:
        fresh = cgroups.Host.create(("memory",))
        assert fresh is not None
        fresh.close()
        assert not stale.exists()
    finally:
        for path in (stale / "1-web", stale):
            if path.exists():
                path.rmdir()

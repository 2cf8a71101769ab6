"""Shared regions with real processes: a writer and a reader share bytes, a
read-only process cannot map its region writable, sizes are sealed, reads
and writes at an offset are bounded."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import PY, helper, wait_until

from procctl.engine.shm import MAX_TRANSFER_BYTES, Mode, Regions, mapped_by
from procctl.errors import UsageError

USER = helper("shm_user.py")
SIZE = 64 * 1024


def _run(regions: Regions, uses: list[tuple[str, Mode]], *args: str) -> str:
    grant = regions.grant(uses)
    result = subprocess.run(
        [PY, USER, *args], env={**os.environ, **grant.env}, pass_fds=grant.fds, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def regions() -> Regions:
    made = Regions({"table": SIZE, "scratch": 4096})
    yield made  # type: ignore[misc]
    made.close()


def test_a_writer_and_a_reader_share_bytes_and_the_region_outlives_them(regions: Regions) -> None:
    """1. A writer maps `table` read-write and writes at an offset, then exits.
    2. A reader that starts after it (as a restarted process would) maps the
       same region read-only and reads the bytes back.
    3. The supervisor reads them too, at the same offset."""
    assert _run(regions, [("table", "rw")], "table", "write", "1000", "hello from the loader") == "written"
    assert _run(regions, [("table", "ro")], "table", "read", "1000", "21") == "hello from the loader"
    assert regions.get("table").read(1000, 5) == b"hello"
    assert regions.get("table").resident_bytes >= 4096


def test_the_supervisor_writes_what_a_process_reads(regions: Regions) -> None:
    regions.get("scratch").write(4090, b"edge!!")
    assert _run(regions, [("scratch", "ro")], "scratch", "read", "4090", "6") == "edge!!"


def test_a_read_only_process_cannot_map_its_region_writable(regions: Regions) -> None:
    """The descriptor a read-only process inherits refuses a shared writable
    mapping (EACCES); a read-write process's is allowed the same mapping."""
    assert _run(regions, [("table", "ro")], "table", "map-writable") == "EACCES"
    assert _run(regions, [("table", "rw")], "table", "map-writable") == "mapped"


def test_the_size_of_a_region_is_sealed(regions: Regions) -> None:
    assert _run(regions, [("table", "rw")], "table", "grow") == "EPERM"
    assert os.fstat(regions.get("table").fd("rw")).st_size == SIZE


def test_the_environment_names_path_size_and_mode(regions: Regions) -> None:
    grant = regions.grant([("table", "ro"), ("scratch", "rw")])
    table, scratch = regions.get("table"), regions.get("scratch")
    assert grant.env == {
        "PROCCTL_SHM_TABLE": f"/proc/self/fd/{table.fd('ro')}",
        "PROCCTL_SHM_TABLE_SIZE": str(SIZE),
        "PROCCTL_SHM_TABLE_MODE": "ro",
        "PROCCTL_SHM_SCRATCH": f"/proc/self/fd/{scratch.fd('rw')}",
        "PROCCTL_SHM_SCRATCH_SIZE": "4096",
        "PROCCTL_SHM_SCRATCH_MODE": "rw",
    }
    assert grant.fds == (table.fd("ro"), scratch.fd("rw"))


@pytest.mark.parametrize(
    ("offset", "length", "message"),
    [
        (SIZE - 10, 11, f"shm read table: 11 bytes at offset {SIZE - 10} go past its end ({SIZE} bytes)"),
        (SIZE + 1, 0, f"shm read table: 0 bytes at offset {SIZE + 1} go past its end ({SIZE} bytes)"),
        (-1, 4, "shm read table: offset and length cannot be negative"),
    ],
)
def test_reads_outside_the_region_are_one_line_errors(regions: Regions, offset: int, length: int, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        regions.get("table").read(offset, length)
    assert str(caught.value) == message


def test_writes_past_the_end_change_nothing(regions: Regions) -> None:
    scratch = regions.get("scratch")
    scratch.write(4000, b"keep")
    with pytest.raises(UsageError, match="go past its end"):
        scratch.write(4000, b"x" * 200)
    assert scratch.read(4000, 4) == b"keep"


def test_one_request_moves_a_bounded_number_of_bytes() -> None:
    big = Regions({"big": 4 * MAX_TRANSFER_BYTES})
    try:
        with pytest.raises(UsageError, match=f"at most {MAX_TRANSFER_BYTES} bytes per request"):
            big.get("big").read(0, MAX_TRANSFER_BYTES + 1)
    finally:
        big.close()


def test_an_unknown_region_names_the_known_ones(regions: Regions) -> None:
    with pytest.raises(UsageError) as caught:
        regions.get("tabel")
    assert str(caught.value) == "unknown shared region 'tabel' (did you mean 'table'?); regions of this run: table, scratch"


def test_mapped_by_sees_which_processes_map_a_region(regions: Regions) -> None:
    grant = regions.grant([("table", "ro")])
    holder = subprocess.Popen([PY, USER, "table", "hold"], env={**os.environ, **grant.env}, pass_fds=grant.fds, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith(b"holding")
        inodes = {region.inode: region.name for region in regions}
        assert mapped_by([holder.pid, os.getpid()], inodes) == {"table": {holder.pid}}
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    wait_until(lambda: mapped_by([holder.pid], inodes) == {}, what="the holder to be gone")


def test_closing_the_regions_leaves_no_descriptor_of_them() -> None:
    made = Regions({"gone": 4096})
    fd = made.get("gone").fd("rw")
    assert "memfd:procctl-gone" in os.readlink(f"/proc/self/fd/{fd}")
    made.close()
    links = []
    for entry in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{entry}"))
        except OSError:
            continue
    assert not any("memfd:procctl-gone" in link for link in links)

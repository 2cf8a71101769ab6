"""The manifest's keys for processes that talk: `[shared.NAME]`, `shared = [...]`,
`ready = { notify = true }` and `watchdog`; every bound a manifest could
overstep is an error naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_manifest import error_of, write

from procctl.config.loader import load_manifest
from procctl.config.manifest import ReadySpec, SharedRegion
from procctl.config.shared import MAX_REGIONS, physical_memory


def test_regions_uses_notify_readiness_and_a_watchdog_load(tmp_path: Path) -> None:
    manifest = load_manifest(
        write(
            tmp_path,
            """
            [shared.table]
            size = "64MiB"
            [shared.scratch]
            size = 4096

            [process.loader]
            cmd = "load"
            shared = ["table"]
            ready = { notify = true, timeout = "30s" }
            watchdog = "10s"

            [process.worker]
            cmd = "work"
            shared = ["table:ro", "scratch:rw"]
            """,
        )
    )
    assert manifest.shared == {"table": SharedRegion("table", 64 * 2**20, 2), "scratch": SharedRegion("scratch", 4096, 4)}
    loader, worker = manifest.processes["loader"], manifest.processes["worker"]
    assert loader.shared == (("table", "rw"),)
    assert worker.shared == (("table", "ro"), ("scratch", "rw"))
    assert loader.ready == ReadySpec(kind="notify", target="", timeout_s=30.0)
    assert loader.watchdog_s == 10.0 and worker.watchdog_s is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[shared.t]\n[process.a]\ncmd = "x"\n', 'procfile.toml:1: shared.t: missing key: size (e.g. size = "64MiB")'),
        ('[shared.t]\nsize = "1MiB"\nsise = 3\n[process.a]\ncmd = "x"\n', "procfile.toml:3: shared.t.sise: unknown key (did you mean 'size'?)"),
        ('[shared.t]\nsize = 0\n[process.a]\ncmd = "x"\n', "procfile.toml:2: shared.t.size: a region holds at least one byte"),
        ('[shared.t]\nsize = "lots"\n[process.a]\ncmd = "x"\n', "procfile.toml:2: shared.t.size: not a size: 'lots' (write e.g. '512KiB', '256MiB', '1GiB')"),
        ('[shared.9lives]\nsize = 1\n[process.a]\ncmd = "x"\n', "procfile.toml:1: shared.9lives: a region name is a letter, then letters, digits and '_' (at most 32)"),
        ('[shared.t]\nsize = 1\n[shared.T]\nsize = 1\n[process.a]\ncmd = "x"\n', "procfile.toml:3: shared.T: the same variable PROCCTL_SHM_T as region 't'"),
        (
            '[shared.t]\nsize = 1\n[shared.t_size]\nsize = 1\n[process.a]\ncmd = "x"\n',
            "procfile.toml:3: shared.t_size: PROCCTL_SHM_T_SIZE is also the size variable of region 't': rename one",
        ),
        ('[process.a]\ncmd = "x"\nshared = ["table"]\n', "procfile.toml:3: process.a.shared: unknown shared region 'table' (no [shared] regions are declared)"),
        (
            '[shared.table]\nsize = 1\n[process.a]\ncmd = "x"\nshared = ["tabel:ro"]\n',
            "procfile.toml:5: process.a.shared: unknown shared region 'tabel' (declared: table) (did you mean 'table'?)",
        ),
        ('[shared.t]\nsize = 1\n[process.a]\ncmd = "x"\nshared = ["t:wo"]\n', "procfile.toml:5: process.a.shared: 't:wo': the mode after ':' is rw or ro"),
        ('[shared.t]\nsize = 1\n[process.a]\ncmd = "x"\nshared = ["t", "t:ro"]\n', "procfile.toml:5: process.a.shared: region 't' is listed twice"),
        ('[shared.t]\nsize = 1\n[process.a]\ncmd = "x"\nshared = "t"\n', 'procfile.toml:5: process.a.shared: expected a list of region names, e.g. ["table", "scratch:ro"]'),
        ('[process.a]\ncmd = "x"\nready = { notify = "yes" }\n', "procfile.toml:3: process.a.ready.notify: expected true (READY=1 on $NOTIFY_SOCKET makes it ready), got 'yes'"),
        ('[process.a]\ncmd = "x"\nready = { notify = true, log = "x" }\n', "procfile.toml:3: process.a.ready: needs exactly one of log, tcp, http, exec, notify"),
        ('[process.a]\ncmd = "x"\nwatchdog = "1ms"\n', "procfile.toml:3: process.a.watchdog: expected a duration from 10ms to 24h"),
        ('[process.a]\ncmd = "x"\nwatchdog = "2d"\n', "procfile.toml:3: process.a.watchdog: expected a duration from 10ms to 24h"),
        ('[process.a]\ncmd = "x"\nwatchdog = 0\n', "procfile.toml:3: process.a.watchdog: must be more than zero"),
        ('[process.a]\ncmd = "x"\nwatchdg = "1s"\n', "procfile.toml:3: process.a.watchdg: unknown key (did you mean 'watchdog'?)"),
        ('shared = 3\n[process.a]\ncmd = "x"\n', "procfile.toml:1: shared: expected a table, got 3"),
    ],
)
def test_bad_keys_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


def test_regions_are_bounded_in_number_and_in_total_size(tmp_path: Path) -> None:
    many = "".join(f"[shared.r{i}]\nsize = 1\n" for i in range(MAX_REGIONS + 1)) + '[process.a]\ncmd = "x"\n'
    assert error_of(tmp_path, many) == f"procfile.toml:1: shared: at most {MAX_REGIONS} shared regions, got {MAX_REGIONS + 1}"
    half = physical_memory() // 2 + 4096
    too_big = f'[shared.a]\nsize = {half}\n[shared.b]\nsize = {half}\n[process.a]\ncmd = "x"\n'
    assert error_of(tmp_path, too_big) == (
        f"procfile.toml:4: shared.b.size: the shared regions add up to more than this machine's memory ({physical_memory()} bytes)"
    )

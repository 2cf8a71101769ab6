"""The history writes each RunRow as it is, field for field: what is read back
is what was added, every field in its own column."""

from __future__ import annotations

from pathlib import Path

from procctl.engine.history import History, RunRow, list_runs


def test_rows_read_back_as_they_were_added(tmp_path: Path) -> None:
    warnings: list[str] = []
    history = History(tmp_path / ".procctl" / "state.db", warnings.append)
    rows = [
        RunRow(
            manifest=str(tmp_path / "procfile.toml"),
            process="thumb",
            instance=f"thumb[{n}]",
            item=f"item-{n}",
            command=f"convert 'item-{n}'",
            session="1700000000-42",
            started_at=1700000000.25 + n,
            ended_at=1700000003.5 + n,
            status="failed" if n else "exited",
            exit_code=n,
            signal=None if n else 9,
            duration_s=3.25,
            peak_rss_bytes=(n + 1) << 20,
            cpu_time_s=0.125 * n,
            restarts=n + 7,
        )
        for n in range(3)
    ]
    for row in rows[:2]:
        history.add(row)
    assert history.flush()
    history.add(rows[2])  # a second batch, written by close
    history.close()
    assert warnings == [] and history.written == 3
    assert sorted(list_runs(tmp_path / ".procctl" / "state.db"), key=lambda row: row.started_at) == rows

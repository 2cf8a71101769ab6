"""Predictions from run history: how long a job will take and how much
memory it will need, for longest-first scheduling and memory-aware admission.

A job is known by its process and its command (an `each` job's command holds
its item, so each item has its own history). A job never seen gets the median
of its siblings (the same process)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple
from pathlib import Path

from procctl.config.plan import EAGER_JOBS, Job
from procctl.engine.history import command_text, list_runs

MAX_PAST_RUNS = 100_000
"""The most recorded runs read for predictions (the latest): a history of a
million-item pool must not make `check` slow."""
RECENT_RUNS = 5
"""How many of a job's latest runs its prediction uses."""


class PastRun(NamedTuple):
    """One recorded run, as much of it as predictions need."""

    process: str
    command: str
    duration_s: float | None
    peak_rss_bytes: int | None
    ended_at: float = 0.0


class Prediction(NamedTuple):
    duration_s: float | None
    """Median wall time of the job's recent runs."""
    rss_bytes: int | None
    """Median peak RSS of its recent runs (whole tree)."""
    source: str
    """'history' (this job's runs) or 'siblings' (its process's median)."""


def command_key(job: Job) -> str:
    """The job's command as the run history stores it."""
    return command_text(job.cmd)


def past_runs(db_path: Path, manifest: Path) -> list[PastRun]:
    """Every recorded run of this manifest, or none if there is no history.
    Raises HistoryError for a database that cannot be read."""
    rows = list_runs(db_path, manifest, limit=MAX_PAST_RUNS)
    return [PastRun(row.process, row.command, row.duration_s, row.peak_rss_bytes, row.ended_at) for row in rows]


def _median(values: Sequence[float | int | None]) -> float | None:
    """The median, as statistics.median reckons it (which costs `check`
    2 ms of start-up to import, with fractions and decimal)."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    middle = len(present) // 2
    return present[middle] if len(present) % 2 else (present[middle - 1] + present[middle]) / 2


class Predictions(Mapping[str, Prediction]):
    """Predictions by instance name. A process of more than `EAGER_JOBS`
    instances is never expanded whole for them: each of its instances gets
    the median of the process's recorded runs, looked up when asked for, and
    none of them is listed."""

    def __init__(self, listed: dict[str, Prediction], per_process: dict[str, Prediction]) -> None:
        self._listed = listed
        self._per_process = per_process
        """Process → the prediction of each of its instances (the big ones)."""

    def __getitem__(self, name: str) -> Prediction:
        found = self._listed.get(name)
        if found is not None:
            return found
        process = name.split("[", 1)[0]
        if process != name and process in self._per_process:
            return self._per_process[process]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._listed)

    def __len__(self) -> int:
        return len(self._listed)


def predict(jobs: Iterable[Job], runs: Iterable[PastRun]) -> Predictions:
    """A prediction for every job with history of its own or of its siblings."""
    by_job: dict[tuple[str, str], list[PastRun]] = {}
    for run in sorted(runs, key=lambda r: r.ended_at):
        by_job.setdefault((run.process, run.command), []).append(run)
    if not by_job:
        return Predictions({}, {})
    segments = getattr(jobs, "segments", None)
    big: dict[str, Prediction] = {}
    if segments is not None:
        # A big pool: one prediction per process, from all of its runs.
        small: list[Job] = []
        for segment in segments:
            if len(segment) <= EAGER_JOBS:
                small.extend(segment)
                continue
            process = segment.spec.name
            runs_of = [run for (name, _), recent in by_job.items() if name == process for run in recent[-RECENT_RUNS:]]
            if runs_of:
                rss = _median([r.peak_rss_bytes for r in runs_of])
                big[process] = Prediction(_median([r.duration_s for r in runs_of]), int(rss) if rss is not None else None, "siblings")
        jobs = small
    jobs = list(jobs)
    own: dict[str, Prediction] = {}
    per_process: dict[str, list[Prediction]] = {}
    for job in jobs:
        recent = by_job.get((job.process, command_key(job)), [])[-RECENT_RUNS:]
        if not recent:
            continue
        rss = _median([r.peak_rss_bytes for r in recent])
        prediction = Prediction(_median([r.duration_s for r in recent]), int(rss) if rss is not None else None, "history")
        own[job.name] = prediction
        per_process.setdefault(job.process, []).append(prediction)
    predictions = dict(own)
    for job in jobs:
        if job.name in own or job.process not in per_process:
            continue
        siblings = per_process[job.process]
        rss = _median([p.rss_bytes for p in siblings])
        predictions[job.name] = Prediction(_median([p.duration_s for p in siblings]), int(rss) if rss is not None else None, "siblings")
    return Predictions(predictions, big)


def lpt_order(jobs: Iterable[Job], predictions: Mapping[str, Prediction]) -> list[Job]:
    """Longest predicted first (jobs without a prediction keep plan order, after)."""
    jobs = list(jobs)
    position = {job.name: i for i, job in enumerate(jobs)}

    def key(job: Job) -> tuple[float, int]:
        prediction = predictions.get(job.name)
        duration = prediction.duration_s if prediction and prediction.duration_s is not None else None
        return (-duration if duration is not None else float("inf"), position[job.name])

    return sorted(jobs, key=key)

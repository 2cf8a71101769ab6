"""Hypothesis: whatever the file holds, the loader returns a Manifest or raises
the one-line ManifestError — never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procctl.config.loader import load_manifest
from procctl.config.manifest import Manifest
from procctl.config.plan import build_plan
from procctl.errors import ManifestError

SETTINGS_KEYS = ["max_parallel", "stop_timeout", "fail_fast", "metrics_interval", "env_file", "limits", "bogus"]
PROCESS_KEYS = [
    "cmd", "cwd", "env", "depends_on", "ready", "restart", "max_restarts", "backoff", "replicas", "port",
    "each", "timeout", "stop_signal", "stop_timeout", "limits", "on_limit", "nice", "restrat",
]  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["10s", "500ms", "2m", "-1s", "256MiB", "TERM", "always", "on-failure", "ready", "a", "b", "[", "(", "h:1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["log", "tcp", "range", "glob", "a", "memory", "nofile", "timeout"]), inner, max_size=3)),
    max_leaves=6,
)
processes = st.dictionaries(
    st.sampled_from(["a", "b", "web", "bad name", ""]),
    st.dictionaries(st.sampled_from(PROCESS_KEYS), values, max_size=6),
    max_size=3,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "settings": st.dictionaries(st.sampled_from(SETTINGS_KEYS), values, max_size=4),
        "env": st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=3),
        "process": processes,
        "other": values,
    },
)


def _check(path: Path) -> None:
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(manifest, Manifest)
    build_plan(manifest)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_structured_documents(document: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "procfile.toml"
        path.write_text(tomli_w.dumps(document))
        _check(path)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)), st.sampled_from(["procfile.toml", "Procfile"]))
def test_arbitrary_bytes(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        _check(path)

"""The bounds on counts and sizes that a manifest or a control request can
set, kept apart from the modules that enforce them: the control client
checks a request against them before it sends it, and must not load the
manifest's model or the shared-memory code to know two numbers."""

MAX_REPLICAS = 10_000
"""Instances of one process: the manifest's `replicas` and a `scale` request."""

MAX_PORT = 65535
"""The highest `PORT` a replica gets (`port + i − 1` for replica i)."""

MAX_POOL = 100_000
"""The largest pool: the manifest's `max_parallel`, `-j` and a `pool` request."""

MAX_TRANSFER_BYTES = 1024 * 1024
"""Bytes one `shm read` or `shm write` request moves."""

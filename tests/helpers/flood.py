"""Writes seeded random bytes to stdout as fast as the pipe takes them, in
64 KiB writes, until SIGTERM or until the file argv[1] + ".stop" exists; then writes the sha256 and the count of what it
wrote to argv[1] and exits 0. With a second argument N it stops by itself
once its stdout pipe has grown past the kernel's default (or after N MiB),
and writes the pipe sizes of its stdout and stderr to argv[1] instead.
Usage: flood.py REPORT [N]"""
import fcntl
import hashlib
import os
import random
import signal
import sys

report = sys.argv[1]
until_grown_mib = int(sys.argv[2]) if len(sys.argv) > 2 else None
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
stop_file = report + ".stop"
rng = random.Random(7)
block = rng.randbytes(1 << 20)
digest = hashlib.sha256()
written = 0
while not stop:
    chunk = block[written % len(block) :][: 65536]
    chunk += block[: 65536 - len(chunk)]
    view = memoryview(chunk)
    while view:
        try:
            n = os.write(1, view)
        except InterruptedError:
            continue
        digest.update(view[:n])
        written += n
        view = view[n:]
    if until_grown_mib is None and os.path.exists(stop_file):
        break
    if until_grown_mib is not None and (fcntl.fcntl(1, fcntl.F_GETPIPE_SZ) > 65536 or written >= until_grown_mib << 20):
        break
with open(report, "w") as f:
    if until_grown_mib is None:
        f.write(f"{digest.hexdigest()} {written}\n")
    else:
        f.write(f"{fcntl.fcntl(1, fcntl.F_GETPIPE_SZ)} {fcntl.fcntl(2, fcntl.F_GETPIPE_SZ)} {digest.hexdigest()} {written}\n")

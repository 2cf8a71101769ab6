"""Appends 'start PID' to LOG and waits until the file GO exists, then appends
'end PID' and exits 0. With a LOCK, it first takes an exclusive lock on it
and exits 99 when another process holds it (two runs at once). Usage:
hold.py LOG GO [LOCK]."""
import fcntl
import os
import sys
import time

log, go = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    lock = open(sys.argv[3], "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(log, "a") as f:
            f.write(f"busy {os.getpid()}\n")
        sys.exit(99)
with open(log, "a") as f:
    f.write(f"start {os.getpid()}\n")
print("holding", flush=True)
while not os.path.exists(go):
    time.sleep(0.02)
with open(log, "a") as f:
    f.write(f"end {os.getpid()}\n")

"""Ignores SIGTERM, says so, then sleeps until killed."""
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
if len(sys.argv) > 1:
    open(sys.argv[1], "w").write(str(__import__("os").getpid()))
while True:
    time.sleep(1)

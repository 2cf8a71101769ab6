"""Runs until SIGTERM; then writes the time (ns) to DIR/NAME and exits 0.
Usage: on_term.py DIR NAME [READY_DELAY]. Prints 'ready' after READY_DELAY s."""
import os
import signal
import sys
import time

directory, name = sys.argv[1], sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


def stop(signum, frame):
    with open(os.path.join(directory, name), "w") as f:
        f.write(str(time.time_ns()))
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
time.sleep(delay)
with open(os.path.join(directory, name + ".ready"), "w") as f:
    f.write(str(time.time_ns()))
print(f"{name} ready", flush=True)
while True:
    time.sleep(0.05)

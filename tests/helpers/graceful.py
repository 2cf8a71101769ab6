"""A service that shuts down gracefully: on SIGTERM it prints 'flushing',
takes SECONDS, prints 'clean exit' and exits with CODE.
Usage: graceful.py CODE [SECONDS]. Prints 'up PID' once its handler is set."""
import os
import signal
import sys
import time

code = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0


def stop(signum, frame):
    print("flushing", flush=True)
    time.sleep(seconds)
    print("clean exit", flush=True)
    sys.exit(code)


signal.signal(signal.SIGTERM, stop)
print(f"up {os.getpid()}", flush=True)
while True:
    time.sleep(0.05)

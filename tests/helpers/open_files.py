"""Opens /dev/null until it cannot; prints the highest descriptor it got and
the error that stopped it."""
import errno
import os

highest = 2
while True:
    try:
        highest = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        print(f"highest fd {highest}; then {errno.errorcode.get(exc.errno, exc.errno)}", flush=True)
        break

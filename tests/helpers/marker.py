"""Writes its start and end times (monotonic-free: wall clock ns) to DIR/NAME,
sleeping SECONDS between. Usage: marker.py DIR NAME SECONDS [EXIT]."""
import os
import sys
import time

directory, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
code = int(sys.argv[4]) if len(sys.argv) > 4 else 0
start = time.time_ns()
time.sleep(seconds)
end = time.time_ns()
with open(os.path.join(directory, name + ".tmp"), "w") as f:
    f.write(f"{start} {end}\n")
os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))
sys.exit(code)

"""Each run does what the next step of its plan says, counting its runs in
COUNTER. A step `SECONDS:CODE` prints 'attempt N', sleeps, exits with CODE;
`stay` prints 'attempt N' and runs until stopped.
Usage: attempts.py COUNTER STEP [STEP...]; past the last step, the last again."""
import os
import sys
import time

counter, steps = sys.argv[1], sys.argv[2:]
runs = int(open(counter).read()) if os.path.exists(counter) else 0
with open(counter + ".tmp", "w") as f:
    f.write(str(runs + 1))
os.rename(counter + ".tmp", counter)
step = steps[min(runs, len(steps) - 1)]
print(f"attempt {runs + 1}", flush=True)
if step == "stay":
    while True:
        time.sleep(0.05)
seconds, code = step.split(":")
time.sleep(float(seconds))
sys.exit(int(code))

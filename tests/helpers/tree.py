"""Starts a grandchild in its own group and a grandchild that calls setsid,
writes all pids to the file named by argv[1], then sleeps."""
import os
import subprocess
import sys
import time

sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
plain = subprocess.Popen(sleeper)
escaped = subprocess.Popen(sleeper, start_new_session=True)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {plain.pid} {escaped.pid}\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("tree ready", flush=True)
time.sleep(600)

"""Writes N random bytes (seeded) to stdout and M to stderr in odd-sized
chunks, the last ones just before exiting with code 3. Also writes the exact
bytes to argv[1] for comparison. Usage: random_bytes.py EXPECT_FILE N SEED."""
import os
import random
import sys

expect, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
data = rng.randbytes(n)
with open(expect, "wb") as f:
    f.write(data)
pos = 0
while pos < len(data):
    size = rng.randint(1, 70000)
    chunk = data[pos : pos + size]
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view):]
    pos += size
os._exit(3)

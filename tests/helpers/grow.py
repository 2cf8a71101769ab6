"""Grows its memory by STEP MiB every PAUSE seconds up to TOTAL MiB (touching
every page), printing its size, then sleeps. Usage: grow.py TOTAL STEP PAUSE."""
import sys
import time

total, step, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
blocks = []
while len(blocks) * step < total:
    blocks.append(bytearray(b"\x01" * (step << 20)))
    print(f"holding {len(blocks) * step} MiB", flush=True)
    time.sleep(pause)
time.sleep(600)

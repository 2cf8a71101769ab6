"""Writes invalid UTF-8, then one line of N bytes with no newline, then exits.
Usage: bad_output.py N."""
import os
import sys

n = int(sys.argv[1])
os.write(1, b"bad \xff\xfe bytes\n\xc3(\n")
block = b"x" * (1 << 20)
left = n
while left > 0:
    chunk = block[: min(left, len(block))]
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view):]
    left -= len(chunk)
os.write(2, b"done\n")

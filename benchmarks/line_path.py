"""The line path alone, in one process: 1 GiB of 100-byte lines in chunks of
`--kib` through `LineSplitter` and `PlainPrinter` to /dev/null, with the
supervisor's heap settings; user and system seconds per GiB. No pipes, no
log: what procctl's own Python costs per byte (docs/profiling.md).

    python3 benchmarks/line_path.py [--kib 256] [--src SRC]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--kib", type=int, default=256)
parser.add_argument("--src", help="a source tree whose procctl package is measured (default: the installed one)")
args = parser.parse_args()
if args.src:
    sys.path.insert(0, args.src)

from procctl import events  # noqa: E402
from procctl.engine.lines import LineSplitter  # noqa: E402
from procctl.engine.loop import _steady_heap  # noqa: E402
from procctl.ui.plain import PlainPrinter  # noqa: E402
from procctl.ui.writer import Writer  # noqa: E402

_steady_heap()
stream = (b"x" * 99 + b"\n") * ((4 << 20) // 100)
step = args.kib << 10
chunks = [stream[at : at + step] for at in range(0, len(stream) - step + 1, step)]
with open(os.devnull, "wb") as devnull:
    printer = PlainPrinter(Writer(devnull), color=False, names=["gen"], processes=["gen"])
    splitter = LineSplitter()
    done, total = 0, 1 << 30
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    while done < total:
        for chunk in chunks:
            printer(events.Output("gen", "gen", stream="stdout", text=splitter.feed(chunk)))
            done += len(chunk)
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
print(f"{args.kib} KiB chunks: {took:.3f} s/GiB wall, user {after.ru_utime - before.ru_utime:.3f} s, system {after.ru_stime - before.ru_stime:.3f} s")

"""Job N of M: reads every M-th entry of the shared table, starting at entry
N-1, so that it touches the whole table, and checks the sum (entry i holds
i). The table is mapped read-only: the manifest lists it as "table:ro"."""

import mmap
import os
import sys

job, jobs = int(sys.argv[1]), int(sys.argv[2])
path, size = os.environ["PROCCTL_SHM_TABLE"], int(os.environ["PROCCTL_SHM_TABLE_SIZE"])
entries = size // 4
picked = range(job - 1, entries, jobs)
expected = (picked[0] + picked[-1]) * len(picked) // 2
with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as table:
    view = memoryview(table).cast("I")
    # A few passes, as a real job would make over its lookup table.
    totals = {sum(view[job - 1 :: jobs]) for _ in range(12)}
    view.release()
ok = totals == {expected}
print(f"job {job}: {len(picked):,} entries, sum {expected:,} {'ok' if ok else 'WRONG'}")
sys.exit(0 if ok else 1)

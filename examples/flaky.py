"""Fails on its first attempt and succeeds on the next: shows restart = "on-failure"."""

import os
import sys

marker = sys.argv[1]
if os.path.exists(marker):
    os.remove(marker)
    print("flaky: second attempt, all good")
else:
    open(marker, "w").close()
    print("flaky: first attempt fails", file=sys.stderr)
    sys.exit(1)

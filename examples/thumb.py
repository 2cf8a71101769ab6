"""A batch job: 'renders' thumbnail N (hashes some bytes for a moment)."""

import hashlib
import sys
import time

item = int(sys.argv[1])
digest = hashlib.sha256()
deadline = time.monotonic() + 0.2 + 0.1 * (item % 4)
while time.monotonic() < deadline:
    digest.update(item.to_bytes(4, "big") * 1024)
print(f"thumbnail {item}: {digest.hexdigest()[:12]}")

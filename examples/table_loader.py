"""Fills the shared region `table` once: entry i (a 4-byte unsigned integer)
holds i. Reports its progress with STATUS= and says READY=1 when the table
is complete, on the notification socket procctl gives it ($NOTIFY_SOCKET,
systemd's sd_notify protocol)."""

import array
import mmap
import os
import select
import socket
import sys

ENTRIES_PER_STEP = 1 << 20


def notify(message: str, *, wait: bool = False) -> None:
    """Send `message`; with `wait`, also wait until it was read, as
    sd_notify_barrier() does: BARRIER=1 carries the write end of a pipe,
    which the reader closes."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), target)
        if wait:
            read_end, write_end = os.pipe()
            sock.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, write_end.to_bytes(4, sys.byteorder))], 0, target)
            os.close(write_end)
            select.select([read_end], [], [], 10.0)
            os.close(read_end)


path, size = os.environ["PROCCTL_SHM_TABLE"], int(os.environ["PROCCTL_SHM_TABLE_SIZE"])
entries = size // 4
with open(path, "r+b") as f, mmap.mmap(f.fileno(), size) as table:
    view = memoryview(table).cast("I")
    for start in range(0, entries, ENTRIES_PER_STEP):
        stop = min(start + ENTRIES_PER_STEP, entries)
        view[start:stop] = array.array("I", range(start, stop))
        notify(f"STATUS=filled {stop * 100 // entries}% of the table")
    view.release()
print(f"table of {entries:,} entries ready")
# It ends right after: wait until procctl has read it.
notify("READY=1\nSTATUS=table complete", wait=True)

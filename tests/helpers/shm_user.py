"""A process that uses a shared region named on its command line, found as
the manifest promises: $PROCCTL_SHM_<NAME> (a path), ..._SIZE, ..._MODE.

    shm_user.py NAME write OFFSET TEXT      # map it writable, put TEXT at OFFSET
    shm_user.py NAME read OFFSET LENGTH     # print what is there
    shm_user.py NAME map-writable           # try to map it writable: print the errno name or "mapped"
    shm_user.py NAME grow                   # try to change its size: print the errno name or "resized"
    shm_user.py NAME hold                   # map it read-only and wait to be killed
"""

import errno
import mmap
import os
import signal
import sys


def main(argv: list[str]) -> int:
    name, action = argv[0], argv[1]
    key = "PROCCTL_SHM_" + name.upper()
    path, size = os.environ[key], int(os.environ[key + "_SIZE"])
    writable = os.environ[key + "_MODE"] == "rw"
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    if action == "write":
        offset, data = int(argv[2]), argv[3].encode()
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as region:
            region[offset : offset + len(data)] = data
        print("written", flush=True)
    elif action == "read":
        offset, length = int(argv[2]), int(argv[3])
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as region:
            print(region[offset : offset + length].decode(errors="replace"), flush=True)
    elif action == "map-writable":
        # The inherited descriptor itself, as the manifest handed it over.
        inherited = int(path.rsplit("/", 1)[1])
        try:
            mmap.mmap(inherited, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE).close()
            print("mapped", flush=True)
        except OSError as exc:
            print(errno.errorcode[exc.errno or 0], flush=True)
    elif action == "grow":
        try:
            os.ftruncate(int(path.rsplit("/", 1)[1]), size * 2)
            print("resized", flush=True)
        except OSError as exc:
            print(errno.errorcode[exc.errno or 0], flush=True)
    elif action == "hold":
        region = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        print("holding", region[:1] is not None, flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

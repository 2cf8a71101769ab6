"""Send one sd_notify datagram (the arguments, one KEY=VALUE per line) to
$NOTIFY_SOCKET, then wait until it was read, as sd_notify_barrier does:
send BARRIER=1 with the write end of a pipe and wait for the pipe's end.

    sd_notify.py READY=1 STATUS=hello            # then exit 0
    sd_notify.py --repeat 0.2 WATCHDOG=1         # send every 0.2 s until killed
    sd_notify.py --size 5000                     # one datagram of 5000 bytes
    sd_notify.py --burst 5000                    # STATUS=1 ... STATUS=5000 as fast as it can
"""

import os
import select
import socket
import sys
import time


def address() -> str:
    value = os.environ["NOTIFY_SOCKET"]
    return "\0" + value[1:] if value.startswith("@") else value


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendto(payload, address())


def barrier(sock: socket.socket, timeout: float = 20.0) -> bool:
    read_end, write_end = os.pipe()
    sock.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, write_end.to_bytes(4, sys.byteorder))], 0, address())
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], timeout)
    os.close(read_end)
    return bool(ready)


def main(argv: list[str]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if argv[:1] == ["--size"]:
        send(sock, b"STATUS=" + b"x" * (int(argv[1]) - 7))
        return 0 if barrier(sock) else 1
    if argv[:1] == ["--burst"]:
        for n in range(1, int(argv[1]) + 1):
            send(sock, b"STATUS=%d" % n)
        return 0 if barrier(sock) else 1
    if argv[:1] == ["--repeat"]:
        interval, payload = float(argv[1]), "\n".join(argv[2:]).encode()
        while True:
            send(sock, payload)
            time.sleep(interval)
    send(sock, "\n".join(argv).encode())
    return 0 if barrier(sock) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

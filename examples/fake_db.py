"""A stand-in database: accepts TCP connections and answers PONG to PING."""

import argparse
import socketserver
import threading
import time


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"PONG\n" if line.strip() == b"PING" else b"ERR\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=54329)
    parser.add_argument("--serve-for", type=float, default=0, help="seconds; 0 = forever")
    args = parser.parse_args()
    print("db: loading data files")
    time.sleep(0.5)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"db: accepting connections on 127.0.0.1:{args.port}")
        if args.serve_for:
            time.sleep(args.serve_for)
            print("db: shutting down")
        else:
            threading.Event().wait()


if __name__ == "__main__":
    main()

"""A stand-in web app: /health answers 200 once it has reached the db."""

import argparse
import http.server
import socket
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--db-port", type=int, default=54329)
    parser.add_argument("--serve-for", type=float, default=0, help="seconds; 0 = forever")
    args = parser.parse_args()
    with socket.create_connection(("127.0.0.1", args.db_port), timeout=5) as conn:
        conn.sendall(b"PING\n")
        print(f"web: db answered {conn.recv(16).decode().strip()}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *fields: object) -> None:
            print("web: " + format % fields)

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"web: listening on http://127.0.0.1:{args.port}")
    if args.serve_for:
        time.sleep(args.serve_for)
        print("web: shutting down")
        server.shutdown()
    else:
        threading.Event().wait()


if __name__ == "__main__":
    main()

"""Stand-in for the TLSNotary notary server: GET /healthcheck returns "Ok".

Run it as a process: `python tests/standins/notary.py --port 0` prints
`listening PORT` once it accepts connections. Options make it respond like
a notary with auth on, a slow one, or a broken one.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any


class StandInNotary(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        settings = self.server.settings
        if settings.delay:
            time.sleep(settings.delay)
        path = self.path.split("?", 1)[0]
        if path == "/info":
            self._send(200, b'{"version":"stand-in","publicKey":"","gitCommitHash":""}')
        elif path != "/healthcheck":
            self._send(404, b"Not Found")
        elif settings.api_key and self.headers.get("X-API-Key") != settings.api_key:
            self._send(401, b"Unauthorized")
        else:
            self._send(settings.status, settings.body.encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], settings: argparse.Namespace) -> None:
        self.settings = settings
        super().__init__(address, StandInNotary)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port (default: free)")
    parser.add_argument("--api-key", default="", help="require this X-API-Key")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--status", type=int, default=200, help="/healthcheck status")
    parser.add_argument("--body", default="Ok", help="/healthcheck body")
    parser.add_argument("--cert", help="serve TLS with this certificate file")
    parser.add_argument("--key", help="private key file for --cert")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    server = Server(("127.0.0.1", settings.port), settings)
    if settings.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(settings.cert, settings.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])

"""The HTTPS server: GET /healthcheck and GET /metrics, a pooled thread per connection.

Each connection gets the socket timeout for the TLS handshake and every
read, and each request may send at most max_request_bytes of request line
and headers within that time, so slow or oversized requests are closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, BinaryIO

from healthcheck import checks
from healthcheck.checks import CheckResult, Expected
from healthcheck.config import HealthConfig
from healthcheck.metrics import CONTENT_TYPE, HealthMetrics
from healthcheck.prober import Prober

log = logging.getLogger(__name__)

ALLOWED_METHODS = "GET, HEAD"
SERVER_NAME = "notary-health"
# Header lines per request; max_request_bytes alone would allow thousands.
MAX_HEADERS = 64
# After rejecting an oversized request, read at most this much of the rest.
DISCARD_MAX_BYTES = 65536
DISCARD_SECONDS = 0.2


class RequestTooLarge(Exception):
    """The request line and headers exceed max_request_bytes."""


class RequestTooSlow(Exception):
    """The request line and headers took longer than the socket timeout."""


class LimitedReader:
    """Wrap a connection's reader with a byte and a time budget per request."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int, max_seconds: float) -> None:
        self._raw = raw
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.reset()

    def reset(self) -> None:
        """Start the budgets of a new request."""
        self._remaining = self.max_bytes
        self._deadline = time.monotonic() + self.max_seconds

    def _take(self, data: bytes) -> bytes:
        self._remaining -= len(data)
        if self._remaining < 0:
            raise RequestTooLarge
        if time.monotonic() > self._deadline:
            raise RequestTooSlow
        return data

    def readline(self, size: int = -1) -> bytes:
        limit = self._remaining + 1
        if size >= 0:
            limit = min(limit, size)
        return self._take(self._raw.readline(limit))

    def read(self, size: int = -1) -> bytes:
        limit = self._remaining + 1
        if size >= 0:
            limit = min(limit, size)
        return self._take(self._raw.read(limit))

    def close(self) -> None:
        self._raw.close()


class HealthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    sys_version = ""
    server: HealthServer
    # parse_request sets these; an oversized request line fails before it,
    # and the 431 response still needs them.
    request_version = "HTTP/1.1"
    requestline = ""
    command = ""
    path = ""

    def setup(self) -> None:
        super().setup()
        config = self.server.config
        self.rfile = LimitedReader(  # type: ignore[assignment]
            self.rfile,  # type: ignore[arg-type]
            max_bytes=config.max_request_bytes,
            max_seconds=config.socket_timeout_seconds,
        )

    def handle_one_request(self) -> None:
        reader = self.rfile
        if isinstance(reader, LimitedReader):
            reader.reset()
        try:
            super().handle_one_request()
        except RequestTooLarge:
            self.close_connection = True
            self._reply(431, {"error": "request header fields too large"})
            self.wfile.flush()
            self._discard_input()
        except RequestTooSlow:
            self.close_connection = True
        except (TimeoutError, ssl.SSLError, ConnectionError) as error:
            log.debug("connection from %s closed: %s", self.client_address[0], error)
            self.close_connection = True

    def _discard_input(self) -> None:
        # Closing a socket with unread input sends a TCP reset, which can
        # discard the 431 response before the client reads it, so the rest
        # of the request is read and dropped, up to a bound.
        self.connection.settimeout(DISCARD_SECONDS)
        discarded = 0
        with contextlib.suppress(OSError):
            while discarded < DISCARD_MAX_BYTES:
                data = self.connection.recv(16384)
                if not data:
                    break
                discarded += len(data)

    def parse_request(self) -> bool:
        """Parse the request line and headers; on bad input respond and return False.

        Only GET and HEAD without a body are served, so the headers matter
        only for Connection. http.server's own parser runs the email package
        on every request, which was the largest CPU cost of a request after
        the TLS handshake in a profile of this service.
        """
        self.close_connection = True
        raw: bytes = self.raw_requestline  # type: ignore[attr-defined]
        self.requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self._reply(400, {"error": "bad request line"})
            return False
        self.command, self.path, self.request_version = words
        connection = ""
        for _ in range(MAX_HEADERS):
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon:
                self._reply(400, {"error": "bad header line"})
                return False
            if name.strip().lower() == "connection":
                connection = value.strip().lower()
        else:
            raise RequestTooLarge
        keep_alive = self.request_version == "HTTP/1.1" or connection == "keep-alive"
        self.close_connection = connection == "close" or not keep_alive
        return True

    def do_GET(self) -> None:
        self._route(send_body=True)

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    def _reject_method(self) -> None:
        # The request body is never read, so the connection cannot be reused.
        self.close_connection = True
        self._reply(405, {"error": "method not allowed"}, allow=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _reject_method

    def _route(self, *, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthcheck":
            result = self.server.prober.current()
            failing = result.failing
            if failing is None:
                self._reply(200, {"status": "ok"}, send_body=send_body)
            else:
                body = {
                    "status": "unhealthy",
                    "check": failing.check,
                    "reason": failing.reason,
                }
                self._reply(503, body, send_body=send_body)
        elif path == "/metrics":
            text = self.server.metrics.render().encode()
            self._send(200, text, CONTENT_TYPE, send_body=send_body)
        else:
            self._reply(404, {"error": "not found"}, send_body=send_body)

    def _reply(
        self,
        status: int,
        body: dict[str, str],
        *,
        send_body: bool = True,
        allow: bool = False,
    ) -> None:
        data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
        self._send(status, data, "application/json", send_body=send_body, allow=allow)

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        *,
        send_body: bool = True,
        allow: bool = False,
    ) -> None:
        path = self.path.split("?", 1)[0]
        label = path if path in ("/healthcheck", "/metrics") else "other"
        self.server.metrics.requests.inc(path=label, status=str(status))
        lines = [
            f"HTTP/1.1 {status} {self.responses[status][0]}",
            f"Server: {SERVER_NAME}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            "Cache-Control: no-store",
        ]
        if allow:
            lines.append(f"Allow: {ALLOWED_METHODS}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write, so headers and body leave in one TLS record.
        self.wfile.write(head + data if send_body else head)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Health checks arrive every few seconds from every checker: count
        # them in /metrics instead of logging each one.
        pass

    def log_error(self, format: str, *args: Any) -> None:
        log.info("request from %s: %s", self.client_address[0], format % args)


class HealthServer(HTTPServer):
    """An HTTPS server with one pooled thread per open connection, up to a cap.

    Threads are reused from connection to connection instead of started for
    each, and a slow client holds only its own thread.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        *,
        config: HealthConfig,
        prober: Prober,
        metrics: HealthMetrics,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.prober = prober
        self.metrics = metrics
        self.tls = tls
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._workers = ThreadPoolExecutor(
            max_workers=config.max_connections, thread_name_prefix="connection"
        )
        super().__init__((config.bind_address, config.port), HealthHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.metrics.rejected.inc()
            log.warning(
                "connection limit %s reached: closing new connections",
                self.config.max_connections,
            )
            self.shutdown_request(request)
            return
        try:
            self._workers.submit(self._serve_connection, request, client_address)
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; the log takes JSON lines.
        log.warning("request from %s failed", client_address[0], exc_info=True)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.config.socket_timeout_seconds)
        if self.tls is None:
            self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]
            return
        # The handshake runs here, in the connection's thread, so a slow
        # client holds only its own thread until the socket timeout.
        try:
            connection = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            log.debug("TLS handshake with %s failed: %s", client_address[0], error)
            return
        try:
            self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]
        finally:
            _close_quietly(connection)


def _close_quietly(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.close()


def tls_context(config: HealthConfig) -> ssl.SSLContext:
    """Return a server context for TLS 1.2 and 1.3 with the instance's key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # NLB health checks fail against targets that speak only TLS 1.3, and
    # Route 53 health checks speak at most TLS 1.2, so both are on.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(config.cert_file, config.key_file)
    return context


def build_prober(config: HealthConfig, metrics: HealthMetrics) -> Prober:
    """Return the prober over the enclave and notary checks of this config."""
    expected: Expected | None
    try:
        expected = checks.load_expected(config)
    except (OSError, ValueError) as error:
        log.error(
            "cannot read the release manifest %s: %s", config.manifest_file, error
        )
        expected = None

    def enclave() -> CheckResult:
        if expected is None:
            return CheckResult(
                check="enclave",
                ok=False,
                reason="manifest",
                detail=f"release manifest {config.manifest_file} is unreadable",
                seconds=0.0,
            )
        return checks.check_enclave(config, expected)

    def notary() -> CheckResult:
        try:
            api_key = checks.read_api_key(config)
        except OSError as error:
            return CheckResult(
                check="notary",
                ok=False,
                reason="api-key",
                detail=f"cannot read api_key_file: {error.strerror}",
                seconds=0.0,
            )
        return checks.check_notary(config, api_key)

    return Prober(
        checks={"enclave": enclave, "notary": notary},
        deadline_seconds=config.deadline_seconds,
        cache_seconds=config.cache_seconds,
        metrics=metrics,
    )


def build_server(config: HealthConfig) -> HealthServer:
    """Return a bound server for `config`; call serve_forever to run it."""
    metrics = HealthMetrics()
    prober = build_prober(config, metrics)
    return HealthServer(
        config=config, prober=prober, metrics=metrics, tls=tls_context(config)
    )

"""The HTTPS server: GET /healthcheck and GET /metrics, a pooled thread per connection.

The TLS handshake and each request's line and headers must complete within
socket_timeout_seconds in total, however slowly the bytes arrive, and may be
at most max_request_bytes, so slow or oversized requests are closed. When
max_connections are open, the connection that has waited longest for a
complete request is closed to make room for a new one.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, BinaryIO

from healthcheck import checks
from healthcheck.checks import CheckResult, Expected
from healthcheck.config import HealthConfig
from healthcheck.connections import ConnectionTable, Tracked
from healthcheck.deadline import Deadline, DeadlineReader, RequestTooSlow
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


class LimitedReader:
    """Wrap a connection's reader with a byte budget per request."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int) -> None:
        self._raw = raw
        self.max_bytes = max_bytes
        self.reset()

    def reset(self) -> None:
        """Start the budget of a new request."""
        self._remaining = self.max_bytes

    def _take(self, data: bytes) -> bytes:
        self._remaining -= len(data)
        if self._remaining < 0:
            raise RequestTooLarge
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
        # The server's deadline began before the TLS handshake, so the first
        # request's budget covers the handshake too.
        deadline = getattr(self.request, "deadline", None)
        if not isinstance(deadline, Deadline):
            deadline = Deadline(config.socket_timeout_seconds)
        self.deadline = deadline
        self.rfile.close()
        raw = DeadlineReader(self.connection, deadline)
        self.rfile = LimitedReader(  # type: ignore[assignment]
            io.BufferedReader(raw, self.rbufsize if self.rbufsize > 0 else 8192),
            max_bytes=config.max_request_bytes,
        )
        self._first_request = True

    def handle_one_request(self) -> None:
        reader = self.rfile
        if isinstance(reader, LimitedReader):
            reader.reset()
        if not self._first_request:
            self.deadline.restart()
        self._first_request = False
        self.server.connections.set_waiting(self.connection.fileno(), waiting=True)
        try:
            super().handle_one_request()
        except RequestTooLarge:
            self.close_connection = True
            self._reply(431, {"error": "request header fields too large"})
            self.wfile.flush()
            self._discard_input()
        except RequestTooSlow:
            self.close_connection = True
            self.server.closed_slow(self.client_address[0], stage="request")
        except (TimeoutError, ssl.SSLError, OSError) as error:
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
        self.server.connections.set_waiting(self.connection.fileno(), waiting=False)
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
        # Reads may have left the timeout at the few moments before the
        # deadline; a response gets the whole socket timeout.
        self.connection.settimeout(self.server.config.socket_timeout_seconds)
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
    each. The accept loop only accepts connections and hands them over. The
    TLS handshake runs in the connection's thread, so a slow client holds
    only its own thread, and only until its deadline.
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
        self.connections = ConnectionTable(config.max_connections)
        # A connection closed to make room ends its thread within moments;
        # until then its successor's work waits in the pool's queue.
        self._workers = ThreadPoolExecutor(
            max_workers=config.max_connections, thread_name_prefix="connection"
        )
        super().__init__((config.bind_address, config.port), HealthHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        tracked, evicted = self.connections.admit(request.fileno(), client_address[0])
        if tracked is None:
            self.metrics.rejected.inc()
            log.warning(
                "connection limit %s reached, all busy: closing new connections",
                self.config.max_connections,
            )
            self.shutdown_request(request)
            return
        if evicted is not None:
            self.metrics.evicted.inc()
            log.warning(
                "connection limit %s reached: closing the longest waiting connection",
                self.config.max_connections,
                extra={"event": "connection-evicted", "client": evicted.client},
            )
        try:
            self._workers.submit(
                self._serve_connection, request, client_address, tracked
            )
        except BaseException:
            self.connections.release(tracked)
            self.shutdown_request(request)
            raise

    def closed_slow(self, client: str, *, stage: str) -> None:
        """Count and log a connection closed at its deadline."""
        self.metrics.slow_closed.inc(stage=stage)
        # One message text for every client, so the log's repeat filter
        # limits it to one line per window during a flood.
        log.warning(
            "closed a connection that sent no complete request within %s s",
            self.config.socket_timeout_seconds,
            extra={"event": "slow-connection", "client": client, "stage": stage},
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; the log takes JSON lines.
        log.warning("request from %s failed", client_address[0], exc_info=True)

    def _serve_connection(
        self, request: Any, client_address: Any, tracked: Tracked
    ) -> None:
        connection = request
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                if not self._handshake(connection, client_address[0]):
                    return
            self.RequestHandlerClass(connection, client_address, self)  # type: ignore[arg-type]
        except Exception:
            self.handle_error(request, client_address)
        finally:
            # Released before the close: once closed, the descriptor may
            # belong to a new connection, which the table must not touch.
            self.connections.release(tracked)
            if connection is not request:
                _close_quietly(connection)
            self.shutdown_request(request)

    def _handshake(self, connection: ssl.SSLSocket, client: str) -> bool:
        """Run the TLS handshake within the deadline; return whether it succeeded.

        CPython's do_handshake applies the socket timeout to the whole
        handshake, not to each read (checked on CPython 3.9 and 3.11), so the
        timeout is an absolute deadline. The first request shares it.
        """
        deadline = Deadline(self.config.socket_timeout_seconds)
        connection.settimeout(deadline.remaining())
        try:
            connection.do_handshake()
        # socket.timeout, not TimeoutError: Python 3.9 keeps them apart.
        except socket.timeout:  # noqa: UP041
            self.closed_slow(client, stage="handshake")
            return False
        except (ssl.SSLError, OSError) as error:
            log.debug("TLS handshake with %s failed: %s", client, error)
            return False
        connection.deadline = deadline  # type: ignore[attr-defined]
        return True

    def server_close(self) -> None:
        super().server_close()
        self._workers.shutdown(wait=False, cancel_futures=True)


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

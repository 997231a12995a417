"""Run the health service in the foreground: `python -m healthcheck --config FILE`."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from types import FrameType

from healthcheck.config import DEFAULT_CONFIG, ConfigError, HealthConfig
from healthcheck.logs import setup_logging
from healthcheck.server import build_server

log = logging.getLogger("healthcheck")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m healthcheck",
        description=(
            "Serve GET /healthcheck and GET /metrics over HTTPS for the notary "
            "enclave on this instance. Logs go to standard output as JSON lines."
        ),
    )
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        metavar="FILE",
        help=f"JSON config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--debug", action="store_true", help="log debug detail (default off)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_args(argv)
    try:
        config = HealthConfig.load(arguments.config)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    setup_logging(
        repeat_seconds=config.log_repeat_seconds,
        level=logging.DEBUG if arguments.debug else logging.INFO,
    )
    try:
        server = build_server(config)
    except (OSError, ssl.SSLError) as error:
        log.error(
            "cannot start on %s:%s: %s",
            config.bind_address,
            config.port,
            error,
            extra={"event": "start-failed"},
        )
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, so it runs in another thread.
        log.info("stopping on signal %s", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "started on %s:%s",
        config.bind_address,
        server.server_address[1],
        extra={"event": "start", "port": server.server_address[1]},
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        server.prober.close()
        log.info("stopped", extra={"event": "stop"})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``prompt-ls``: start the language server on stdio (default) or TCP.

stdout carries the protocol alone, so logs go to stderr or to ``--log-file``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from server import __version__

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prompt-ls",
        description="Language server for offline text-to-image prompt autocompletion.",
    )
    parser.add_argument("--version", action="version", version=f"prompt-ls {__version__}")
    parser.add_argument(
        "--tcp", metavar="HOST:PORT", type=host_port, help="serve on TCP instead of stdio"
    )
    parser.add_argument("--log-file", metavar="PATH", help="write logs here instead of stderr")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: WARNING",
    )
    return parser.parse_args(argv)


def configure_logging(level: str, log_file: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_file)
    # Imported after logging is set up: loading the server and the engine takes a moment, and
    # `--version` / `--help` should not pay for it.
    from server.server import SERVER

    if args.tcp:
        SERVER.start_tcp(*args.tcp)
    else:
        SERVER.start_io()
    if SERVER.worker.working:
        # A download or training run cannot be interrupted, and Python would wait for it
        # before exiting: the editor is gone, so leave now. The store writes atomically and
        # training resumes, so nothing is left half written.
        logging.getLogger(__name__).warning("exiting while the model thread is still busy")
        logging.shutdown()
        os._exit(SERVER.exit_code)
    sys.exit(SERVER.exit_code)

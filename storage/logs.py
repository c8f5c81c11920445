"""Logging for every blockdrive entry point (server, scheduler, jobs, client).

One call, :func:`setup`, at the start of a command: log lines go to stderr as
``time level logger: message``; ``--log-level`` (or ``BLOCKDRIVE_LOG_LEVEL``) chooses how much.
Noisy third-party loggers (py4j, urllib3, botocore) stay at WARNING unless DEBUG is asked for.
Dependency-free, so the client can use it without the server's packages.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

LEVELS = ("debug", "info", "warning", "error")
DEFAULT = "warning"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("py4j", "urllib3", "botocore", "boto3", "s3transfer", "fsspec", "filelock", "apscheduler.executors")


def level_of(name: str | None) -> int:
    """The logging level for ``name`` (case-insensitive), else for ``BLOCKDRIVE_LOG_LEVEL``, else WARNING."""
    name = (name or os.environ.get("BLOCKDRIVE_LOG_LEVEL") or DEFAULT).lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {name!r}: choose one of {', '.join(LEVELS)}")
    return getattr(logging, name.upper())


def add_argument(parser) -> None:
    """``--log-level`` on an argparse parser; :func:`setup` reads it. Unset, it leaves the
    attribute alone, so the flag can be given before or after a subcommand that also takes it."""
    parser.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS,
                        help=f"how much to log to stderr (default: $BLOCKDRIVE_LOG_LEVEL or {DEFAULT})")


def setup(level: str | None = None, stream=None) -> int:
    """Configure the root logger once for this process; returns the level set."""
    lvl = level_of(level)
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    for old in [h for h in root.handlers if getattr(h, "_blockdrive", False)]:
        root.removeHandler(old)
    handler._blockdrive = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in QUIET:
        logging.getLogger(name).setLevel(lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING))
    return lvl

"""The ``blockdrive`` command: the user's commands always, the operator's when the server is installed.

The user commands (``login``, ``push``, ``pull``, ``sync``, ``remote …``, ``share`` …) live in
:mod:`client.cli` and need only the client's packages. The operator commands (``init``,
``serve``, ``user``, ``put``/``get``/``ls``/``mkdir`` with ``--user``, ``fsck``, ``config``,
``jobs``, ``scheduler``, ``report``) plug in through the entry-point group
``blockdrive.commands``: each entry is a ``register_cli(subparsers)`` function, tagged with the
extra it needs (``[server]``). An entry whose extra is not installed (``pip install
'blockdrive[client]'``) is simply left out; ``--log-level debug`` says why.

Logging is configured here for every command (``--log-level``). Expected failures print one
line, ``blockdrive: error: …``, and exit 1; the traceback is logged only at debug level.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from importlib import import_module, metadata
from typing import Callable

from storage import logs
from storage.errors import BlockdriveError

from .api import ClientError
from .cli import register_cli as register_client_cli

log = logging.getLogger("blockdrive.cli")

EXIT_OK, EXIT_ERROR = 0, 1
GROUP = "blockdrive.commands"
# What the group holds when this code runs from a source checkout whose installed metadata
# predates the group: the same entries, tried by importing them.
BUILTIN = {"server": "webapi.cli:register_cli", "jobs": "jobs.cli:register_cli",
           "report": "jobs.report_cli:register_cli"}


def extra_missing(ep: metadata.EntryPoint) -> str | None:
    """The first package that ``ep``'s extras require and this environment lacks, else None."""
    dist = getattr(ep, "dist", None)
    if dist is None or not ep.extras:
        return None
    for req in dist.requires or []:
        marker = req.partition(";")[2]
        if not any(re.search(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]", marker) for extra in ep.extras):
            continue
        name = re.match(r"[A-Za-z0-9._-]+", req.strip())[0]
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return name
    return None


def operator_registrars() -> list[tuple[str, Callable]]:
    """``(name, register_cli)`` of every installed operator command set, in a stable order."""
    eps = sorted(metadata.entry_points(group=GROUP), key=lambda ep: ep.name)
    specs = [(ep.name, ep.value, extra_missing(ep)) for ep in eps] or [(n, v, None) for n, v in BUILTIN.items()]
    out = []
    for name, value, missing in specs:
        if missing:
            log.debug("operator commands %r left out: the package %s is not installed "
                      "(pip install 'blockdrive[server]')", name, missing)
            continue
        module, _, attr = value.partition(":")
        try:
            out.append((name, getattr(import_module(module), attr.split()[0])))
        except ImportError as exc:
            log.debug("operator commands %r left out: %s", name, exc)
    return out


def _listing(parser_of: dict[str, argparse.ArgumentParser], names: list[str]) -> str:
    return "\n".join(f"  {n:<14}{parser_of[n].description or ''}" for n in names)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockdrive", formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="blockdrive [-h] [--config CONFIG] [--log-level LEVEL] COMMAND ...",
                                description="A self-hostable file drive on a deduplicating block store.")
    p.add_argument("--config", help="operator commands: a TOML config file (default: $BLOCKDRIVE_CONFIG; "
                                    "env BLOCKDRIVE_* overrides)")
    logs.add_argument(p)
    # listed in the epilog instead, in two groups
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    register_client_cli(sub)
    user = list(sub.choices)
    for _, register in operator_registrars():
        register(sub)
    operator = [n for n in sub.choices if n not in user]
    p.epilog = ("user commands (talk to a blockdrive server over HTTP; sign in with `blockdrive login`):\n"
                + _listing(sub.choices, user))
    if operator:
        p.epilog += ("\n\noperator commands (run on the server's host: its database and storage):\n"
                     + _listing(sub.choices, operator))
    else:
        p.epilog += "\n\n(operator commands need the server: pip install 'blockdrive[server]')"
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        logs.setup(getattr(args, "log_level", None))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return args.fn(args)
    except BrokenPipeError:  # `blockdrive ls | head`
        return EXIT_OK
    except (BlockdriveError, ClientError, OSError) as exc:
        log.debug("%s failed", args.command, exc_info=True)
        print(f"blockdrive: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("blockdrive: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

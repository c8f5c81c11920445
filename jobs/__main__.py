"""``python -m jobs run gc`` == ``blockdrive jobs run gc`` (used by the kill tests)."""

import argparse
import sys

from storage.errors import BlockdriveError

from .cli import register_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = p.parse_args(["jobs", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.fn(args)
    except BlockdriveError as exc:
        print(f"blockdrive: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

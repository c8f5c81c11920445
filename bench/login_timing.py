"""Sign-in latency for a known and an unknown email, side by side, with their ratio (a ratio
near 1.00 means the time taken does not tell who has an account). Runs the domain's sign-in
in process on a throwaway embedded home, at the configured scrypt cost; asserts nothing.

    python -m bench.login_timing [--rounds 12] [--scrypt-n 131072]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from storage.config import load_config
from storage.db import make_engine, migrate
from storage.drive import Drive
from storage.errors import Unauthorized


def measure(drive: Drive, email: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        try:
            drive.login(email, "not-the-password")
        except Unauthorized:
            pass
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--scrypt-n", type=int, default=None, help="default: security.scrypt_n (2^17)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        overrides = {"storage": {"home": home}}
        if args.scrypt_n:
            overrides["security"] = {"scrypt_n": args.scrypt_n}
        cfg = load_config(env={}, overrides=overrides)
        engine = make_engine(cfg.database_url)
        migrate(engine)
        drive = Drive(cfg, engine=engine)
        drive.create_user("known@example.com", "the-password")
        measure(drive, "known@example.com", 1)  # warm-up: imports, the first connection
        measure(drive, "unknown@example.com", 1)
        known, unknown = [], []
        for _ in range(args.rounds):  # interleaved, so drift in the machine's load hits both alike
            known += measure(drive, "known@example.com", 1)
            unknown += measure(drive, "unknown@example.com", 1)
        drive.close()
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"sign-in with a wrong password, scrypt N={cfg['security']['scrypt_n']}, {args.rounds} rounds each (median)")
    print(f"{'known email':>16}  {'unknown email':>16}  {'unknown/known':>14}")
    print(f"{k * 1000:>13.1f} ms  {u * 1000:>13.1f} ms  {u / k:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

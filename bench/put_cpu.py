"""CPU time of one small PUT through the whole web app, in process: the request's Python
(routing, authentication, the put and its statements) without sockets or worker processes.
Prints CPU milliseconds per PUT; asserts nothing.

    .venv/bin/python -m bench.put_cpu --files 400

CPU time (``time.process_time``) moves much less than wall time on a busy machine, so this
is the figure to compare before and after a change to the request path, run in turn.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from bench.common import machine
from bench.smallput import fresh_drive


def cpu_per_put(files: int, size: int, warm: int = 30) -> float:
    """CPU milliseconds per PUT of ``size`` random bytes, over ``files`` PUTs after ``warm``."""
    from webapi import create_app
    rng = random.Random(21)
    with tempfile.TemporaryDirectory(prefix="bd-putcpu-") as tmp:
        drive, _engine, user = fresh_drive(Path(tmp) / "home", None)
        try:
            token = drive.login("bench@example.com", "benchpassword")
            client = create_app(drive.config, drive=drive).test_client()
            headers = {"Authorization": f"Bearer {token}"}
            t0 = 0.0
            for i in range(warm + files):
                if i == warm:
                    t0 = time.process_time()
                r = client.put(f"/api/v1/nodes/{user.root_id}/children/f{i:06d}", data=rng.randbytes(size),
                               headers=headers)
                if r.status_code != 201:
                    raise SystemExit(f"PUT answered {r.status_code}: {r.get_data(as_text=True)[:200]}")
            return (time.process_time() - t0) / files * 1000
        finally:
            drive.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    print(machine())
    for _ in range(args.repeat):
        print(f"{args.size} B PUT through the web app, in process: "
              f"{cpu_per_put(args.files, args.size):.2f} CPU ms per PUT ({args.files} PUTs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One operation of the reliability suite in a process of its own, so that
``BLOCKDRIVE_CRASH_AT`` can SIGKILL it at a named point:

    python -m tests.reliability.driver tus EMAIL NAME FILE CHUNK_BYTES   resumable upload, CHUNK_BYTES per append
    python -m tests.reliability.driver blocks EMAIL NAME FILE            the block API: missing, PUT each block, commit
    python -m tests.reliability.driver puts EMAIL THREADS FILE...          concurrent puts into the root, named as the files
    python -m tests.reliability.driver job NAME                          a maintenance job (gc, compact, tier)

The store is the one ``BLOCKDRIVE_CONFIG`` names. Progress goes to stdout as JSON lines
(``{"session": ...}`` as soon as a tus session exists, ``{"name": ...}`` as each of
``puts`` is acknowledged), so the test can resume what the killed process started. The same functions run in the test process for the "restart".

``job`` attaches to the Spark JVM whose py4j gateway ``PYSPARK_GATEWAY_PORT`` and
``PYSPARK_GATEWAY_SECRET`` name (the test session's), the way a job driver attaches to a
cluster: killing the job's process then costs no JVM start. Without them it starts its own.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading

from storage.chunking import make_chunker
from storage.config import load_config
from storage.drive import Drive
from storage.uploads import Uploads


_SAY = threading.Lock()


def say(**kw) -> None:
    """One JSON line on stdout; threads answered at once (a group commit) take turns, so
    their lines never interleave."""
    with _SAY:
        print(json.dumps(kw), flush=True)


def tus_upload(drive: Drive, user_id: int, name: str, data: bytes, chunk: int, sid: str | None = None):
    """Create (or resume) a tus upload of ``data`` into the user's root and send it in appends
    of ``chunk`` bytes, as a tus client does. Returns the session's final info."""
    up = Uploads(drive)
    root = drive.account(user_id).root_id
    if sid is None:
        sid = up.create(user_id, root, name, len(data)).id
        say(session=sid)
    info = up.get(user_id, sid)
    while info.state == "active" and info.offset < len(data):
        info, _res = up.append(user_id, sid, info.offset, io.BytesIO(data[info.offset:info.offset + chunk]))
    return info


def block_upload(drive: Drive, user_id: int, name: str, data: bytes):
    """Delta sync as the client does it: cut locally, ask which blocks are missing, PUT those,
    commit the list."""
    import hashlib
    up = Uploads(drive)
    chunker = make_chunker(drive.config["storage"])
    blocks = [bytes(v) for v in chunker.chunks(io.BytesIO(data))]
    ids = [hashlib.sha256(b).hexdigest() for b in blocks]
    missing = set(up.missing(user_id, ids))
    for hid, raw in zip(ids, blocks):
        if hid in missing:
            up.put_block(user_id, hid, raw)
            missing.discard(hid)
    root = drive.account(user_id).root_id
    return up.commit_blocks(user_id, root, name, ids, len(data), hashlib.sha256(data).hexdigest())


def concurrent_puts(drive: Drive, user_id: int, paths: list[str], threads: int) -> None:
    """Put every file of ``paths`` into the user's root on ``threads`` threads, as concurrent
    requests of one server process do (their small blocks share the open pack and its fsyncs),
    saying each one as soon as it is acknowledged."""
    from concurrent.futures import ThreadPoolExecutor
    root = drive.account(user_id).root_id

    def one(path: str) -> None:
        with open(path, "rb") as fh:
            res = drive.put(user_id, root, os.path.basename(path), fh)
        say(name=os.path.basename(path), node=res.node.id, version=res.version_id)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, paths))


def attached_spark(cfg):
    """The Spark session of the JVM named by PYSPARK_GATEWAY_PORT (see the module doc)."""
    from jobs.spark import get_spark
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return get_spark(cfg)
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession
    gateway = launch_gateway()
    jvm = gateway.jvm
    jsc = jvm.org.apache.spark.api.java.JavaSparkContext.fromSparkContext(jvm.org.apache.spark.SparkContext.getOrCreate())
    sc = SparkContext(gateway=gateway, jsc=jsc, conf=SparkConf(_jvm=jvm))
    return SparkSession(sc)


def main(argv: list[str]) -> int:
    cfg = load_config()
    drive = Drive(cfg)
    op = argv[0]
    if op in ("tus", "blocks"):
        user = drive.user_by_email(argv[1])
        with open(argv[3], "rb") as fh:
            data = fh.read()
        if op == "tus":
            info = tus_upload(drive, user.id, argv[2], data, int(argv[4]))
            say(state=info.state, node=info.node_id)
        else:
            res = block_upload(drive, user.id, argv[2], data)
            say(node=res.node.id, version=res.version_id)
        return 0
    if op == "puts":
        concurrent_puts(drive, drive.user_by_email(argv[1]).id, argv[3:], int(argv[2]))
        return 0
    if op == "job":
        from jobs.runner import run_job
        res = run_job(argv[1], drive, attached_spark(cfg), cfg)
        say(job=argv[1], status=res.status)  # the shared session is not ours to stop
        return 0 if res.status == "ok" else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

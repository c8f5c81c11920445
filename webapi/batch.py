"""Batched block API for sync clients (see storage/batch.py): many blocks per request, many
commits per transaction, folders a level at a time, and a version's block map."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from prometheus_client import Counter

from storage import batch
from storage.errors import InvalidInput

from .auth import login_required
from .util import body, drive, int_arg, read_body, uploads

bp = Blueprint("batch", __name__, url_prefix="/api/v1")

# What clients sent as block data, counted by the server (benchmarks and tests read these).
# No counter of bytes *new to the server*: /metrics is public, and that figure would tell
# whether someone else already stores a given block.
BLOCKS_IN = Counter("blockdrive_batch_blocks_received_total", "Blocks received by POST /batch/blocks")
BLOCK_BYTES_IN = Counter("blockdrive_batch_block_bytes_received_total",
                         "Raw block bytes received by POST /batch/blocks")


@bp.post("/batch/blocks")
@login_required
def put_blocks():
    up = uploads()
    # Read whole (bounded): parsing small frames straight off the WSGI stream costs a read
    # call per frame, which dominated a batch of small blocks.
    request.max_content_length = max(batch.MAX_BATCH_BYTES, up.store.chunker.max_size + batch.FRAME.size)
    if request.content_length is None and not request.environ.get("wsgi.input_terminated"):
        raise InvalidInput("send the blocks with a Content-Length")
    res = batch.put_blocks(up, g.user.id, _read_whole() if request.content_length is not None else read_body())
    BLOCKS_IN.inc(res.received)
    BLOCK_BYTES_IN.inc(res.received_bytes)
    return jsonify(asdict(res))


def _read_whole() -> bytes:
    """The body of a request with a Content-Length, read straight from the WSGI input in one
    call for exactly that many bytes (all PEP 3333 lets an application ask for).
    ``request.get_data()`` reads 64 KiB at a time through werkzeug's bounded stream, and
    gunicorn copies the read-ahead it holds beyond each read again on every one: about three
    times the CPU per byte, most of a batch's time on the server."""
    n = request.content_length
    if n > request.max_content_length:
        raise RequestEntityTooLarge()
    source = request.environ["wsgi.input"]
    parts, got = [], 0
    while got < n:  # one turn with gunicorn; a server may return less per call
        data = source.read(n - got)
        if not data:
            break  # a truncated body: the frame parser reports it
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _results(items):
    return [{"ok": asdict(r["ok"]) if not isinstance(r["ok"], dict) else r["ok"]} if "ok" in r else r
            for r in items]


@bp.post("/batch/commit")
@login_required
def commit():
    data = body({"files": list}, required=("files",))
    return jsonify(results=_results(batch.commit_many(uploads(), g.user.id, data["files"])))


@bp.post("/batch/folders")
@login_required
def folders():
    data = body({"folders": list}, required=("folders",))
    return jsonify(results=_results(batch.make_folders(drive(), g.user.id, data["folders"])))


@bp.get("/nodes/<id:node_id>/blocks")
@login_required
def block_map(node_id):
    return jsonify(batch.block_map(drive(), g.user.id, node_id, int_arg("version", None, 1)))


@bp.get("/nodes/<id:node_id>/tree")
@login_required
def tree(node_id):
    return jsonify(batch.tree(drive(), g.user.id, node_id))

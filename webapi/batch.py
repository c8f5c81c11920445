"""Batched block API for sync clients (see storage/batch.py): many blocks per request, many
commits per transaction, folders a level at a time, and a version's block map."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from prometheus_client import Counter

from storage import batch
from storage.errors import BlockdriveError, InvalidInput
from storage.names import validate_name
from storage.uploads import Uploads

from . import traffic
from .auth import login_required
from .errors import problem_details
from .schemas import BatchCommit, BatchFolders, FileEntry, FolderEntry, parse
from .util import MAX_ID, drive, int_arg, read_body, uploads

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
    traffic.uploaded(g.user.id, res.received_bytes, versions=0)
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


def _node_id(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise InvalidInput("parent_id must be a node id")
    return value


def file_entry(e) -> batch.FileEntry:
    """One entry of a batch commit as a typed entry; InvalidInput (or InvalidName) for the
    first thing wrong with it, checked in the order its fields are listed."""
    if not isinstance(e, dict):
        raise InvalidInput("each file must be an object")
    extra = set(e) - set(FileEntry.model_fields)
    if extra:
        raise InvalidInput(f"unknown field {sorted(extra)[0]!r}")
    parent_id, size, sha = _node_id(e.get("parent_id")), e.get("size"), e.get("sha256")
    name = validate_name(e.get("name") if isinstance(e.get("name"), str) else "")
    ids = Uploads.parse_hashes(e.get("blocks"))
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_ID:
        raise InvalidInput("size must be a whole number of bytes")
    try:
        digest = bytes.fromhex(sha) if isinstance(sha, str) and len(sha) == 64 else None
    except ValueError:
        digest = None
    if digest is None:
        raise InvalidInput("sha256 must be the file's SHA-256 as 64 hex digits")
    if_match = e.get("if_match")
    if if_match is not None and (not isinstance(if_match, (str, int)) or isinstance(if_match, bool)
                                 or len(str(if_match)) > 100):
        raise InvalidInput("if_match must be an ETag or a version id")
    return batch.FileEntry(parent_id, name, ids, size, digest,
                           str(if_match).strip('"') if if_match is not None else None, bool(e.get("if_none_match")))


def folder_entry(e) -> batch.FolderEntry:
    """One entry of a batch of folders as a typed entry (its name is checked by storage)."""
    if not isinstance(e, dict) or set(e) - set(FolderEntry.model_fields):
        raise InvalidInput("each folder is {parent_id, name}")
    return batch.FolderEntry(_node_id(e.get("parent_id")), e.get("name") if isinstance(e.get("name"), str) else "")


def entry_problem(exc: BlockdriveError) -> dict:
    """A refused entry's result: the problem fields of :func:`webapi.errors.problem` (code
    for type, no status: the request as a whole succeeded)."""
    return {"code": exc.code, "title": type(exc).__name__, "detail": exc.message, **problem_details(exc)}


def _run_batch(entries: list, parse, run) -> list[dict]:
    """Parse each entry, run the batch on those that parsed, and merge the results in order:
    ``{"ok": ...}`` or ``{"error": problem}`` each."""
    results: list[dict | None] = [None] * len(entries)
    good = []
    for i, e in enumerate(entries):
        try:
            good.append((i, parse(e)))
        except BlockdriveError as exc:
            results[i] = {"error": entry_problem(exc)}
    for (i, _), r in zip(good, run([entry for _, entry in good])):
        results[i] = {"error": entry_problem(r)} if isinstance(r, BlockdriveError) else {"ok": asdict(r)}
    return results  # type: ignore[return-value]


def _at_most(entries: list, most: int, what: str) -> list:
    if len(entries) > most:
        raise InvalidInput(f"{what} must be a list of at most {most} objects")
    return entries


@bp.post("/batch/commit")
@login_required
def commit():
    files = _at_most(parse(BatchCommit).files, batch.MAX_BATCH_FILES, "files")
    results = _run_batch(files, file_entry, lambda ok: batch.commit_many(uploads(), g.user.id, ok))
    traffic.uploaded(g.user.id, 0, versions=sum("ok" in r for r in results))
    return jsonify(results=results)


@bp.post("/batch/folders")
@login_required
def folders():
    entries = _at_most(parse(BatchFolders).folders, batch.MAX_BATCH_FOLDERS, "folders")
    return jsonify(results=_run_batch(entries, folder_entry, lambda ok: batch.make_folders(drive(), g.user.id, ok)))


@bp.get("/nodes/<id:node_id>/blocks")
@login_required
def block_map(node_id):
    return jsonify(batch.block_map(drive(), g.user.id, node_id, int_arg("version", None, 1)))


@bp.get("/nodes/<id:node_id>/tree")
@login_required
def tree(node_id):
    return jsonify(batch.tree(drive(), g.user.id, node_id))

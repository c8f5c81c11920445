"""The block API of delta sync: which blocks are missing (and whether the files they are for fit
the quota), send a block, commit a version."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from storage import batch
from storage.errors import InvalidInput
from storage.uploads import Uploads
from storage.wire import MAX_HASHES

from . import traffic
from .auth import login_required
from .nodes import created_response
from .schemas import Commit, HashList, PlannedFile, parse, validate
from .util import etag_value, read_body, uploads

bp = Blueprint("blocks", __name__, url_prefix="/api/v1")


@bp.post("/blocks/missing")
@login_required
def missing():
    data = parse(HashList)
    up = uploads()
    if data.files is not None:
        # the files these blocks are for: 413 now if they cannot fit, before any is sent
        if len(data.files) > MAX_HASHES or not all(isinstance(f, dict) for f in data.files):
            raise InvalidInput(f"files must be a list of at most {MAX_HASHES} {{size, blocks, parent_id?}} objects")
        planned = [validate(PlannedFile, f) for f in data.files]
        batch.check_room(up, g.user.id, [batch.PlannedFile(f.size, f.blocks, f.parent_id) for f in planned],
                         Uploads.parse_hashes(data.hashes))
    return jsonify(missing=up.missing(g.user.id, data.hashes), chunking=up.chunking())


@bp.put("/blocks/<hash:sha256>")
@login_required
def put_block(sha256):
    up = uploads()
    request.max_content_length = up.store.chunker.max_size
    if request.content_length is None and not request.environ.get("wsgi.input_terminated"):
        raise InvalidInput("send the block with a Content-Length")
    data = read_body()
    new = up.put_block(g.user.id, sha256.lower(), data)
    traffic.uploaded(g.user.id, len(data), versions=0)
    return jsonify(sha256=sha256.lower(), stored=new), 201 if new else 200


@bp.post("/nodes/<id:node_id>/children/<name>/commit")
@login_required
def commit(node_id, name):
    data = parse(Commit)
    res = uploads().commit_blocks(g.user.id, node_id, name, data.blocks, data.size, data.sha256,
                                  if_match=etag_value(request.headers.get("If-Match")))
    traffic.uploaded(g.user.id, 0)
    return created_response(res.node, 201 if res.created else 200)

"""The block API of delta sync: which blocks are missing, send a block, commit a version."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from storage.errors import InvalidInput

from . import traffic
from .auth import login_required
from .nodes import created_response
from .schemas import Commit, HashList, parse
from .util import etag_value, read_body, uploads

bp = Blueprint("blocks", __name__, url_prefix="/api/v1")


@bp.post("/blocks/missing")
@login_required
def missing():
    data = parse(HashList)
    up = uploads()
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

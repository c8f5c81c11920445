"""The wire protocol the server and the client share: limits, framing and formats of the block API.

Dependency-free (standard library only), so the client can import it without the server's
packages; the server's request handling (``storage.batch``, ``storage.uploads``) and the client
(``client.api``, ``client.sync``) both read their constants from here.

Block id
    The SHA-256 of a block's raw bytes, written as 64 lowercase hex digits in JSON and as the
    32 raw digest bytes in the framed body below.

``POST /api/v1/batch/blocks`` body
    Frames back to back, each ``FRAME`` (the raw block id, then the block's length as a
    big-endian unsigned 32-bit integer) followed by that many bytes of the block.

Chunking parameters
    ``POST /api/v1/blocks/missing`` answers ``{"missing": [...], "chunking": {...}}`` where
    ``chunking`` is ``{"chunker": "fastcdc"|"fixed", "min": int, "avg": int, "max": int}``; a
    client cuts files with :func:`chunker_conf` of it so that its blocks are the server's.
"""

from __future__ import annotations

import hashlib
import struct

#: one block in a ``POST /batch/blocks`` body: raw SHA-256, big-endian length; then the bytes
FRAME = struct.Struct(">32sI")
#: block ids per ``blocks/missing`` question or per commit
MAX_HASHES = 10_000
#: blocks per ``POST /batch/blocks`` request
MAX_BATCH_BLOCKS = 4096
#: files per ``POST /batch/commit`` request
MAX_BATCH_FILES = 1000
#: folders per ``POST /batch/folders`` request
MAX_BATCH_FOLDERS = 1000
#: the SHA-256 of no bytes: the content hash (and ETag) of an empty file
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def chunking_params(storage_conf: dict) -> dict:
    """The ``chunking`` object the server announces, from its ``[storage]`` settings."""
    return {"chunker": storage_conf["chunker"], "min": storage_conf["chunk_min"],
            "avg": storage_conf["chunk_avg"], "max": storage_conf["chunk_max"]}


def chunker_conf(params: dict) -> dict:
    """The ``[storage]``-style settings :func:`storage.chunking.make_chunker` takes, from the
    ``chunking`` object the server announced (the inverse of :func:`chunking_params`)."""
    return {"chunker": params["chunker"], "chunk_min": params["min"], "chunk_avg": params["avg"],
            "chunk_max": params["max"]}

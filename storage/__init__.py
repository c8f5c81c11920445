"""blockdrive's storage core: the library every other part of blockdrive stands on.

Vocabulary, fixed here and used everywhere:

node     a file or a folder in a user's tree (``nodes``), addressed by a stable id.
version  one immutable content of a file node (``file_versions``).
chunk    a byte range cut from an incoming stream by the chunker.
block    a stored, content-addressed chunk: its id is the SHA-256 of its raw bytes
         (``blocks``). Each distinct block is stored once for the whole system.
pack     a file on a block backend holding many blocks (``packs``); immutable once closed.
ref      a version's use of a block (``version_blocks``); ``blocks.refcount`` counts them.

This package imports nothing of blockdrive's above it (no Flask, Spark, APScheduler,
``webapi`` or ``jobs``); a unit test enforces that.
"""

__version__ = "0.1.0"

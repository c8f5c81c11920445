"""The closed sets of values the metadata stores as strings: pack and upload session states,
roles, node kinds, tiers and job run statuses.

Each is a :class:`StrEnum`, so a member equals the string stored in the database
(``PackState.SEALED == "sealed"``) and can be written to a column or compared with one as it is.
The columns stay ``VARCHAR``: no migration, and rows written before these enums read the same.
"""

from __future__ import annotations

from enum import StrEnum


class PackState(StrEnum):
    """A pack's life: ``open`` while written (or written but never committed: GC reclaims it
    after the grace period), ``sealed`` once committed and readable, ``retiring`` when compaction
    superseded it (its file is deleted after the grace period), ``deleted`` when its file is gone."""

    OPEN = "open"
    SEALED = "sealed"
    RETIRING = "retiring"
    DELETED = "deleted"


class Tier(StrEnum):
    """Where a pack's file lives."""

    LOCAL = "local"
    HDFS = "hdfs"
    S3 = "s3"


class UploadState(StrEnum):
    """An upload session: ``active`` while it may receive bytes (its pins hold blocks against GC),
    then ``done`` (committed), ``expired`` (past its expiry) or ``aborted`` (cancelled)."""

    ACTIVE = "active"
    DONE = "done"
    EXPIRED = "expired"
    ABORTED = "aborted"


class UploadKind(StrEnum):
    """``tus``: a resumable upload of one file, committed when its last byte arrives;
    ``chunked``: a resumable upload of one file sent in numbered parts (Nextcloud's chunked
    upload), committed only when the client asks; ``blocks``: a client's delta-sync block
    uploads."""

    TUS = "tus"
    CHUNKED = "chunked"
    BLOCKS = "blocks"


class Role(StrEnum):
    """What a user may do with a node, weakest first; :attr:`rank` orders them."""

    VIEWER = "viewer"
    EDITOR = "editor"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}

class LinkRole(StrEnum):
    """What a public link lets its holder do: ``viewer`` reads the linked node (and what is
    below it); ``uploader`` (a file-drop link, to a folder) only adds files to the folder,
    never lists or reads it."""

    VIEWER = "viewer"
    UPLOADER = "uploader"


#: The roles a share may grant, and a public link.
SHARE_ROLES = (Role.VIEWER, Role.EDITOR)
LINK_ROLES = tuple(LinkRole)


class NodeKind(StrEnum):
    FILE = "file"
    FOLDER = "folder"


class JobStatus(StrEnum):
    """A job run: ``running`` until it ends ``ok`` or ``failed``; ``crashed`` when its process
    died and the next run of the same job found it still ``running``."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    CRASHED = "crashed"

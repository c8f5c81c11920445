"""Response bodies as typed objects, declared once with pydantic (see :mod:`webapi.schemas`
for why): each model turns a domain object into its JSON answer and writes its schema into
the OpenAPI document (:func:`response_schemas`).

Declared here: nodes and versions, the answers of most routes. The other answers (shares,
links, tokens, the account, batch results) are still written as dicts in their views and
described by hand in :mod:`webapi.openapi`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, WithJsonSchema

from .schemas import clean_schema
from .util import iso

ROLE_RIGHTS: dict[str, tuple[bool, bool, bool]] = {  # read, write, share
    "owner": (True, True, True),
    "editor": (True, True, False),
    "viewer": (True, False, False),
}


class Out(BaseModel):
    """A response body. Fields named in ``omit_if_none`` are left out rather than sent as
    null (and are declared without null in the schema)."""

    omit_if_none: ClassVar[tuple[str, ...]] = ()

    def dump(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if not (v is None and k in self.omit_if_none)}


class Permissions(Out):
    """What the caller may do with a node, from their role."""

    role: Annotated[str, WithJsonSchema({"enum": list(ROLE_RIGHTS)})]
    read: bool
    write: bool
    share: bool

    @classmethod
    def of(cls, role: str) -> Permissions:
        read, write, share = ROLE_RIGHTS.get(role, ROLE_RIGHTS["viewer"])
        return cls(role=role, read=read, write=write, share=share)


class Node(Out):
    """A file or folder as the caller sees it."""

    omit_if_none = ("deleted_at", "new_bytes")

    id: int
    kind: Literal["file", "folder"]
    name: str
    parent_id: int | None
    size: int | None
    etag: str | None
    version_id: int | None
    created_at: str | None
    updated_at: str | None
    permissions: Permissions
    deleted_at: Annotated[str | None, WithJsonSchema({"type": "string"})] = None
    # an upload's answer only: bytes of the caller's own that the upload added
    new_bytes: Annotated[int | None, WithJsonSchema({"type": "integer"})] = None

    @classmethod
    def of(cls, n, new_bytes: int | None = None) -> Node:
        return cls(id=n.id, kind=n.kind, name=n.name, parent_id=n.parent_id, size=n.size, etag=n.etag,
                   version_id=n.version_id, created_at=iso(n.created_at), updated_at=iso(n.updated_at),
                   permissions=Permissions.of(n.role), deleted_at=iso(n.deleted_at), new_bytes=new_bytes)


class Version(Out):
    """One version of a file; ``etag`` is its content hash, as on a download."""

    id: int
    node_id: int
    size: int
    etag: str
    sha256: str
    created_at: str | None
    created_by: int | None
    current: bool

    @classmethod
    def of(cls, v) -> Version:
        return cls(id=v.id, node_id=v.node_id, size=v.size, etag=v.sha256, sha256=v.sha256,
                   created_at=iso(v.created_at), created_by=v.created_by, current=v.current)


def node_json(n, new_bytes: int | None = None) -> dict:
    return Node.of(n, new_bytes).dump()


def version_json(v) -> dict:
    return Version.of(v).dump()


def response_schemas() -> dict[str, dict]:
    """The response models' schemas (and the models they nest) for the OpenAPI document's
    components, by name."""
    out: dict[str, dict] = {}
    for model in (Node, Version):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        nested = schema.pop("$defs", {})
        out[model.__name__] = schema
        out.update(nested)
    return {name: clean_schema(schema) for name, schema in out.items()}

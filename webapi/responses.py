"""Response bodies as typed objects, declared once with pydantic (see :mod:`webapi.schemas`
for why): each model turns a domain object into its JSON answer and writes its schema into
the OpenAPI document (:func:`response_schemas`).

Declared here: nodes, versions, shares, links, tokens and the account. The smaller answers
(batch results, block maps, trees, counts) are still written as dicts in their views and
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


class Granted(Out):
    """The answer to a grant: the same fields whether the address has an account or not."""

    node_id: int
    email: str
    role: str
    granted_by: int
    created_at: str | None

    @classmethod
    def fields_of(cls, sh) -> dict:
        return dict(node_id=sh.node_id, email=sh.email, role=sh.role, granted_by=sh.granted_by,
                    created_at=iso(sh.created_at))

    @classmethod
    def of(cls, sh) -> Granted:
        return cls(**cls.fields_of(sh))


class Share(Granted):
    """A grant or a pending invitation, as its owner lists them."""

    user_id: int | None
    pending: bool
    invitation_id: int | None

    @classmethod
    def of(cls, sh) -> Share:
        return cls(**Granted.fields_of(sh), user_id=sh.user_id, pending=sh.pending, invitation_id=sh.invitation_id)


class Link(Out):
    """A public link, never with its token (only its creation answer has it)."""

    id: int
    node_id: int
    role: str
    created_at: str | None
    expires_at: str | None
    has_password: bool
    revoked_at: str | None
    downloads: int

    @classmethod
    def fields_of(cls, li) -> dict:
        return dict(id=li.id, node_id=li.node_id, role=li.role, created_at=iso(li.created_at),
                    expires_at=iso(li.expires_at), has_password=li.has_password, revoked_at=iso(li.revoked_at),
                    downloads=li.downloads)

    @classmethod
    def of(cls, li) -> Link:
        return cls(**cls.fields_of(li))


class NewLink(Link):
    """A link just created: with its token and its URL, shown this once."""

    token: str
    url: str

    @classmethod
    def of_new(cls, li, token: str, url: str) -> NewLink:
        return cls(**Link.fields_of(li), token=token, url=url)


class TokenInfo(Out):
    """One of the caller's API tokens or admin sessions, never its secret."""

    id: int
    name: str | None
    kind: Annotated[str, WithJsonSchema({"enum": ["api", "session"]})]
    created_at: str | None
    last_used_at: str | None
    expires_at: str | None
    current: bool

    @classmethod
    def of(cls, t) -> TokenInfo:
        return cls(id=t.id, name=t.name, kind=t.kind, created_at=iso(t.created_at), last_used_at=iso(t.last_used_at),
                   expires_at=iso(t.expires_at), current=t.current)


class Usage(Out):
    """What holds the bytes an account is charged for."""

    current_bytes: int
    old_versions_bytes: int
    trash_bytes: int
    pending_bytes: int


class Account(Out):
    """The caller's account. ``used_bytes`` is the total charged; with ``pending_bytes`` (an
    upload's blocks not yet in a version) it is everything the quota counts."""

    id: int
    email: str
    plan: str
    quota_bytes: int
    used_bytes: int
    root_id: int | None
    is_admin: bool
    pending_bytes: int
    usage: Usage

    @classmethod
    def of(cls, user, u) -> Account:
        return cls(id=user.id, email=user.email, plan=user.plan, quota_bytes=user.quota_bytes, used_bytes=u.used,
                   root_id=user.root_id, is_admin=user.is_admin, pending_bytes=u.pending,
                   usage=Usage(current_bytes=u.current, old_versions_bytes=u.old_versions, trash_bytes=u.trash,
                               pending_bytes=u.pending))


def node_json(n, new_bytes: int | None = None) -> dict:
    return Node.of(n, new_bytes).dump()


def version_json(v) -> dict:
    return Version.of(v).dump()


def response_schemas() -> dict[str, dict]:
    """The response models' schemas (and the models they nest) for the OpenAPI document's
    components, by name."""
    out: dict[str, dict] = {}
    for model in (Node, Version, Granted, Share, Link, NewLink, TokenInfo, Account):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        nested = schema.pop("$defs", {})
        out[model.__name__] = schema
        out.update(nested)
    return {name: clean_schema(schema) for name, schema in out.items()}

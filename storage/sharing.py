"""Sharing: grants of a node to other users, and public links.

Only a node's owner manages its shares and links. A share to an address with no account is
kept as an invitation and becomes a share when that account is created (see
:func:`storage.accounts.accept_invitations`); granting answers the same either way, so
sharing cannot be used to find out who has an account. Shares are inherited down the tree (the
permission check lives in :func:`storage.tree.get_node`). A link token carries at least 256
random bits and only its SHA-256 is stored; a link password is hashed like an account's.
Reading through a link acts as the node's owner on the linked subtree only, with the role
reported as the link's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Iterator

import sqlalchemy as sa

from .accounts import normalize_email, token_hash
from .clock import now
from .drive import Drive, VersionInfo
from .errors import Gone, InvalidInput, NotFound, Unauthorized
from .models import Link, Node, Share, User
from .models.sharing import Invitation
from .ratelimit import Limiter
from .tree import NodeInfo, ancestor_ids, get_node, node_info, role_of
from .states import LINK_ROLES, SHARE_ROLES, Role

LINK_TOKEN_BYTES = 32
MAX_LINK_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class ShareInfo:
    node_id: int
    user_id: int | None  # None while pending
    email: str
    role: str
    granted_by: int
    created_at: dt.datetime
    pending: bool = False  # an invitation to an address that has no account yet
    invitation_id: int | None = None


@dataclass(frozen=True)
class LinkInfo:
    id: int
    node_id: int
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    has_password: bool
    revoked_at: dt.datetime | None
    downloads: int


def _link_info(link: Link) -> LinkInfo:
    return LinkInfo(link.id, link.node_id, link.role, link.created_at, link.expires_at,
                    link.password_hash is not None, link.revoked_at, link.downloads)


class Sharing:
    def __init__(self, drive: Drive, limiter: Limiter | None = None):
        self.drive = drive
        srv = drive.config["server"]
        self.limiter = limiter or Limiter(drive.sm, srv["auth_max_failures"], srv["auth_window_seconds"])

    # ---- shares ----------------------------------------------------------------------

    def list_shares(self, user_id: int, node_id: int) -> list[ShareInfo]:
        """The node's shares, then its pending invitations."""
        with self.drive.sm() as s:
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            rows = s.execute(sa.select(Share, User.email).join(User, User.id == Share.grantee_id)
                             .where(Share.node_id == node.id).order_by(Share.id)).all()
            out = [ShareInfo(sh.node_id, sh.grantee_id, email, sh.role, sh.granted_by, sh.created_at)
                   for sh, email in rows]
            invites = s.execute(sa.select(Invitation).where(Invitation.node_id == node.id)
                                .order_by(Invitation.id)).scalars()
            return out + [ShareInfo(i.node_id, None, i.email, i.role, i.granted_by, i.created_at, True, i.id)
                          for i in invites]

    def grant(self, user_id: int, node_id: int, email: str, role: str) -> tuple[ShareInfo, bool]:
        """Grant (or change) ``role`` on a node to the user with ``email``, or invite the
        address if it has no account yet; True if new. The answer has the same shape and
        status either way (the caller learns whether the address has an account only from
        :meth:`list_shares`, as the owner of what was shared)."""
        if role not in SHARE_ROLES:
            raise InvalidInput(f"role must be one of {', '.join(SHARE_ROLES)}")
        email = normalize_email(email)

        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            owner_email = s.execute(sa.select(User.email).where(User.id == node.owner_id)).scalar_one()
            if email == owner_email:
                raise InvalidInput("the owner already has every right on their own files")
            grantee = s.execute(sa.select(User).where(User.email == email)).scalar_one_or_none()
            if grantee is None:
                row = s.execute(sa.select(Invitation).where(Invitation.node_id == node.id,
                                                            Invitation.email == email)).scalar_one_or_none()
                cls, fields = Invitation, {"email": email}
            else:
                row = s.execute(sa.select(Share).where(Share.node_id == node.id, Share.grantee_id == grantee.id)
                                ).scalar_one_or_none()
                cls, fields = Share, {"grantee_id": grantee.id}
            created = row is None
            if created:
                row = cls(node_id=node.id, role=role, granted_by=user_id, created_at=now(), **fields)
                s.add(row)
            else:
                row.role = role
            s.flush()
            return ShareInfo(node.id, None, email, role, row.granted_by, row.created_at), created
        return self.drive.tx(run)

    def revoke(self, user_id: int, node_id: int, grantee_id: int) -> None:
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            n = s.execute(sa.delete(Share).where(Share.node_id == node.id, Share.grantee_id == grantee_id)).rowcount
            if n == 0:
                raise NotFound(f"node {node_id} is not shared with user {grantee_id}")
        self.drive.tx(run)

    def revoke_invitation(self, user_id: int, node_id: int, invitation_id: int) -> None:
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            n = s.execute(sa.delete(Invitation).where(Invitation.node_id == node.id,
                                                      Invitation.id == invitation_id)).rowcount
            if n == 0:
                raise NotFound(f"no pending invitation {invitation_id} on node {node_id}")
        self.drive.tx(run)

    def shared_with_me(self, user_id: int) -> list[NodeInfo]:
        """Live nodes other users shared with the caller directly (not those below them)."""
        with self.drive.sm() as s:
            nodes = s.execute(sa.select(Node, Share.role).join(Share, Share.node_id == Node.id)
                              .where(Share.grantee_id == user_id, Node.deleted_at.is_(None))
                              .order_by(Node.name, Node.id)).all()
            return [node_info(s, n, role_of(s, user_id, n)) for n, _role in nodes]

    # ---- links -----------------------------------------------------------------------

    def create_link(self, user_id: int, node_id: int, role: str = "viewer", expires_in: int | None = None,
                    password: str | None = None) -> tuple[LinkInfo, str]:
        if role not in LINK_ROLES:
            raise InvalidInput(f"a link's role must be one of {', '.join(LINK_ROLES)}")
        if expires_in is not None and not (isinstance(expires_in, int) and 0 < expires_in <= MAX_LINK_SECONDS):
            raise InvalidInput(f"expires_in must be a number of seconds between 1 and {MAX_LINK_SECONDS}")
        if password is not None and not (isinstance(password, str) and 1 <= len(password) <= 1024):
            raise InvalidInput("a link password must be 1 to 1024 characters")
        token = "bl_" + secrets.token_urlsafe(LINK_TOKEN_BYTES)
        pw_hash = self.drive.hasher.hash(password) if password else None

        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            t = now()
            link = Link(token_hash=token_hash(token), node_id=node.id, role=role, created_by=user_id,
                        created_at=t, expires_at=t + dt.timedelta(seconds=expires_in) if expires_in else None,
                        password_hash=pw_hash, downloads=0)
            s.add(link)
            s.flush()
            return _link_info(link)
        return self.drive.tx(run, attempts=1), token

    def list_links(self, user_id: int, node_id: int) -> list[LinkInfo]:
        with self.drive.sm() as s:
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            links = s.execute(sa.select(Link).where(Link.node_id == node.id).order_by(Link.id)).scalars().all()
            return [_link_info(x) for x in links]

    def revoke_link(self, user_id: int, node_id: int, link_id: int) -> None:
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            link = s.get(Link, link_id)
            if link is None or link.node_id != node.id or link.revoked_at is not None:
                raise NotFound(f"link {link_id} not found")
            link.revoked_at = now()
        self.drive.tx(run)

    def _resolve(self, token: str, password: str | None, node_id: int | None = None) -> tuple[Link, Node]:
        """The link and the node asked for (the linked node, or one below it). Unknown -> 404,
        expired or revoked -> 410, missing or wrong password -> 401 (rate-limited)."""
        # No session is held across the password check: the limiter writes in its own
        # transaction, and SQLite allows one writer at a time.
        with self.drive.sm() as s:
            link = s.execute(sa.select(Link).where(Link.token_hash == token_hash(token or ""))).scalar_one_or_none()
        if link is None:
            raise NotFound("no such link")
        if link.revoked_at is not None:
            raise Gone("this link was revoked")
        if link.expires_at is not None and link.expires_at <= now():
            raise Gone("this link has expired")
        if link.password_hash is not None:
            key = f"link:{link.id}"
            if not password:  # asking without one is not a guess, so it is not counted
                raise Unauthorized("this link needs a password (X-Link-Password header)")
            self.limiter.attempt(key)
            if not self.drive.hasher.verify(password, link.password_hash):
                raise Unauthorized("wrong link password")
            # Only this reader's own try is given back: a success must not wipe the count
            # of a guesser working on the same shared password.
            self.limiter.refund(key)
        with self.drive.sm() as s:
            root = s.get(Node, link.node_id)
            if root is None or root.deleted_at is not None:
                raise NotFound("no such link")
            node = root
            if node_id is not None and node_id != root.id:
                node = s.get(Node, node_id) if isinstance(node_id, int) else None
                # below the link's node: read from the node's path, not walked up a query a level
                if node is None or node.deleted_at is not None or \
                        root.id not in ancestor_ids(s, node):
                    raise NotFound(f"node {node_id} not found")
            return link, node

    def link_get(self, token: str, password: str | None, node_id: int | None = None) -> tuple[LinkInfo, NodeInfo]:
        link, node = self._resolve(token, password, node_id)
        info = self.drive.get(node.owner_id, node.id)
        return _link_info(link), dataclasses.replace(info, role=link.role)

    def link_children(self, token: str, password: str | None, node_id: int | None = None,
                      **page) -> tuple[list[NodeInfo], str | None]:
        link, node = self._resolve(token, password, node_id)
        items, cursor = self.drive.list_children(node.owner_id, node.id, **page)
        return [dataclasses.replace(i, role=link.role) for i in items], cursor

    def link_open(self, token: str, password: str | None, node_id: int | None = None, start: int = 0,
                  end: int | None = None) -> tuple[NodeInfo, VersionInfo, Iterator[bytes]]:
        link, node = self._resolve(token, password, node_id)
        info, version, chunks = self.drive.open(node.owner_id, node.id, start=start, end=end)
        with self.drive.sm() as s, s.begin():
            s.execute(sa.update(Link).where(Link.id == link.id).values(downloads=Link.downloads + 1))
        return dataclasses.replace(info, role=link.role), version, chunks

"""Sharing: grants of a node to other users, and public links.

Only a node's owner manages its shares and links. A share to an address with no account is
kept as an invitation and becomes a share when that account is created (see
:func:`storage.accounts.accept_invitations`); granting answers the same either way, so
sharing cannot be used to find out who has an account. Shares are inherited down the tree (the
permission check lives in :func:`storage.tree.get_node`). A link token carries at least 256
random bits and only its SHA-256 is stored; a link password is hashed like an account's.
Reading through a link acts as the node's owner on the linked subtree only, with the role
reported as the link's.

A file-drop link (role ``uploader``, to a folder only) is the other way round: its holder may
only add files to the folder (:meth:`Sharing.link_put`), as its owner would (the owner's quota
is charged), and never list or read anything through it. A name already taken gets a free one
("name (2).ext"): a drop never overwrites. A browser that gave a link's right password keeps
an *unlock key* (:meth:`Sharing.link_unlock`) instead of the password: it opens that link only,
and stops working if the link's password hash changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import sqlalchemy as sa

from . import changes
from .accounts import normalize_email, token_hash
from .clock import now
from .drive import Drive, PutResult, VersionInfo
from .errors import Forbidden, Gone, InvalidInput, NotFound, Unauthorized
from .models import Link, Node, Share, User
from .models.sharing import Invitation
from .ratelimit import Limiter
from .names import validate_name
from .tree import NodeInfo, ancestor_ids, clashes, get_node, node_info, role_of
from .states import LINK_ROLES, SHARE_ROLES, LinkRole, NodeKind, Role

LINK_TOKEN_BYTES = 32
MAX_LINK_SECONDS = 10 * 365 * 86400
MAX_FREE_NAME_TRIES = 1000  # "name (2).ext" ... "name (1000).ext", then the drop is refused


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


def free_name_candidates(name: str) -> Iterator[str]:
    """``name``, then "stem (2).ext", "stem (3).ext", ...: the names a dropped file may take
    (a leading dot, as in ".profile", is part of the stem, not an extension)."""
    yield name
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in range(2, MAX_FREE_NAME_TRIES + 1):
        yield f"{stem} ({n}){ext}"


def _unlock_key(link: Link) -> str:
    # Keyed by the stored password hash: only the server can make it, and it dies with the
    # password; bound to the link's id, so it opens no other link.
    return hmac.new((link.password_hash or "").encode(), f"link-unlock:{link.id}".encode(),
                    hashlib.sha256).hexdigest()


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
            changed = not created and row.role != role
            if created:
                row = cls(node_id=node.id, role=role, granted_by=user_id, created_at=now(), **fields)
                s.add(row)
            else:
                row.role = role
            s.flush()
            if grantee is not None and (created or changed):
                kind = changes.ChangeKind.SHARE_GAINED if created else changes.ChangeKind.SHARE_CHANGED
                changes.record_share(s, kind, node, grantee.id, role)
            return ShareInfo(node.id, None, email, role, row.granted_by, row.created_at), created
        return self.drive.tx(run)

    def revoke(self, user_id: int, node_id: int, grantee_id: int) -> None:
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            # journal first: its locks (owner, then grantee) come before the share row's, as in a purge
            changes.record_share(s, changes.ChangeKind.SHARE_LOST, node, grantee_id, None)
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

    def leave(self, user_id: int, node_id: int) -> None:
        """The grantee gives up their own share of ``node_id`` (the owner's files stay as
        they are). NotFound when nothing is shared with them on that node itself."""
        def run(s):
            node = s.get(Node, node_id) if isinstance(node_id, int) else None
            if node is None:
                raise NotFound(f"node {node_id} is not shared with you")
            # journal first: its locks (owner, then grantee) come before the share row's, as in a purge
            changes.record_share(s, changes.ChangeKind.SHARE_LOST, node, user_id, None)
            n = s.execute(sa.delete(Share).where(Share.node_id == node_id, Share.grantee_id == user_id)).rowcount
            if n == 0:
                raise NotFound(f"node {node_id} is not shared with you")
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
            if role == LinkRole.UPLOADER and node.kind != NodeKind.FOLDER:
                raise InvalidInput("a file-drop link must be to a folder")
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

    def _resolve(self, token: str, password: str | None, node_id: int | None = None,
                 unlock: str | None = None) -> tuple[Link, Node]:
        """The link and the node asked for (the linked node, or one below it). Unknown -> 404,
        expired or revoked -> 410, missing or wrong password -> 401 (rate-limited); a right
        ``unlock`` key (:meth:`link_unlock`) stands for the password."""
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
        if link.password_hash is not None and not (unlock and hmac.compare_digest(unlock, _unlock_key(link))):
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

    def _resolve_reader(self, token: str, password: str | None, node_id: int | None,
                        unlock: str | None) -> tuple[Link, Node]:
        """:meth:`_resolve` for a read: a file-drop link is refused (it never shows what the
        folder holds)."""
        link, node = self._resolve(token, password, node_id, unlock)
        if link.role != LinkRole.VIEWER:
            raise Forbidden("this is a file-drop link: it only accepts files, nothing can be read through it")
        return link, node

    def link_info(self, token: str, password: str | None, unlock: str | None = None) -> LinkInfo:
        """The link itself (its role, expiry), after the same checks as a read or a drop:
        unknown, expired, revoked or locked links raise as :meth:`link_get` does."""
        link, _node = self._resolve(token, password, None, unlock)
        return _link_info(link)

    def link_unlock(self, token: str, password: str | None) -> str:
        """Check ``password`` (rate-limited, as every link password) and return the key a
        browser session keeps instead of it, to open this link again without asking."""
        link, _node = self._resolve(token, password)
        return _unlock_key(link)

    def link_get(self, token: str, password: str | None, node_id: int | None = None,
                 unlock: str | None = None) -> tuple[LinkInfo, NodeInfo]:
        link, node = self._resolve_reader(token, password, node_id, unlock)
        info = self.drive.get(node.owner_id, node.id)
        return _link_info(link), dataclasses.replace(info, role=link.role)

    def link_children(self, token: str, password: str | None, node_id: int | None = None,
                      unlock: str | None = None, **page) -> tuple[list[NodeInfo], str | None]:
        link, node = self._resolve_reader(token, password, node_id, unlock)
        items, cursor = self.drive.list_children(node.owner_id, node.id, **page)
        return [dataclasses.replace(i, role=link.role) for i in items], cursor

    def link_open(self, token: str, password: str | None, node_id: int | None = None, start: int = 0,
                  end: int | None = None, unlock: str | None = None) -> tuple[NodeInfo, VersionInfo, Iterator[bytes]]:
        link, node = self._resolve_reader(token, password, node_id, unlock)
        info, version, chunks = self.drive.open(node.owner_id, node.id, start=start, end=end)
        with self.drive.sm() as s, s.begin():
            s.execute(sa.update(Link).where(Link.id == link.id).values(downloads=Link.downloads + 1))
        return dataclasses.replace(info, role=link.role), version, chunks

    def link_put(self, token: str, password: str | None, name: str, stream: BinaryIO, *,
                 size_hint: int | None = None, unlock: str | None = None) -> PutResult:
        """Drop ``stream`` as a new file ``name`` into a file-drop link's folder, as its owner
        would upload it (their quota, limits and traffic). A taken name becomes the first
        free "name (n).ext"; nothing already there is ever replaced. The link's password and
        expiry are checked as for a read; a view link is refused."""
        name = validate_name(name)
        link, folder = self._resolve(token, password, None, unlock)
        if link.role != LinkRole.UPLOADER:
            raise Forbidden("this link is for viewing: files cannot be added through it")
        with self.drive.sm() as s:
            free = next((n for n in free_name_candidates(name) if not clashes(s, {(folder.id, n)})), None)
        if free is None:
            raise InvalidInput(f"too many files named like {name!r} in this folder")
        # if_none_match: a file that took the same name meanwhile is refused, not replaced;
        # anonymous: the sender is not the owner, so skipping the owner's blocks would tell
        # them by its speed what the owner stores
        return self.drive.put(folder.owner_id, folder.id, validate_name(free), stream,
                              if_none_match=True, size_hint=size_hint, anonymous=True)

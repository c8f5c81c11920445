"""Search by name: the live files and folders a user may see (their own, and everything below
a node shared with them) whose names hold every word of a query, best matches first.

The index. Migration 0011 adds one, kept in step with ``nodes`` by triggers, over the names
of live nodes only (a trashed node has no ``live_name``, so it leaves the index as it goes to
the trash and comes back on restore):

- SQLite: the FTS5 table ``node_fts`` (tokeniser unicode61, diacritics folded). A word is a
  run of letters and digits, so "report-2024_final.pdf" holds "report", "2024", "final" and
  "pdf". Its second column ``anc`` holds the ids of the node's ancestors and its own: "in
  these subtrees" is then a clause of the same full-text query, answered inside the index,
  so a search costs what the caller's own trees hold, not what everyone's do.
- MySQL/MariaDB: the InnoDB FULLTEXT table ``node_words``, whose text the triggers build
  the same way (every word lower-cased and prefixed with ``zz``: InnoDB would otherwise keep
  "_" inside words, drop words under three characters and drop stop words such as "the"),
  followed by the ancestor ids as words ``zy_<id>``, which no name can make, to the same end.

The query. Each word of the caller's text is searched as a prefix ("repo" finds "report"),
and all must match. Only letters and digits reach the engine, each quoted, so nothing the
caller types is ever read as full-text syntax (quotes, ``*``, ``-``, ``NEAR``, parentheses).

The rule. Whatever the index answers, a node is returned only if it is live, not a root, and
owned by the caller or at or below a live node shared with them: the same visibility
:func:`storage.tree.get_node` grants. Results are ranked: names holding more of the words
whole first ("invoice" over "invoices"), then shorter names (a closer match), then by name
and id; they are paged by offset (a page is at most :data:`MAX_LIMIT`; results stop at
:data:`MAX_OFFSET`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

import sqlalchemy as sa

from .drive import Drive
from .errors import InvalidInput
from .models import FileVersion, Node, Share, User
from .names import normal
from .tree import ROLES, NodeInfo, ancestors, child_path, info_of, under
from .states import Role

__all__ = ["INDEX_TABLES", "MAX_LIMIT", "MAX_OFFSET", "MAX_QUERY", "Search", "SearchHit", "query_words"]

#: Tables the search index lives in (not models: triggers write them, this module reads them)
INDEX_TABLES = ("node_fts", "node_words")
MAX_QUERY = 200  # characters
MAX_WORDS = 8
MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_SCOPES = 500  # subtrees named in the SQLite index clause; past that the SQL filter alone narrows
WORD = re.compile(r"[^\W_]+")  # a run of letters and digits, as both indexes cut names
MYSQL_MARK = "zz"  # the prefix migration 0011 puts on every indexed word on MySQL
MYSQL_SUBTREE = "zy_"  # and on the ids of a node's ancestors and its own


@dataclass(frozen=True)
class SearchHit:
    """One result: the node as the caller sees it, and the folders from the top of what the
    caller may see (their root, or the node shared with them) down to its parent, as
    ``(id, name)`` pairs; their own root has the name ""."""

    node: NodeInfo
    folders: list[tuple[int, str]]
    shared: bool

    @property
    def path(self) -> str:
        """The folders as text: "/Docs/2024" for the caller's own, "Projects/2024" below a
        share (the shared folder's name first)."""
        names = [name for _id, name in self.folders]
        if not self.shared:
            return "/" + "/".join(names[1:])
        return "/".join(names)


def query_words(q: str) -> list[str]:
    """The words searched for in ``q``, lower-cased; InvalidInput when there are none, or
    when ``q`` is too long."""
    if not isinstance(q, str) or not q.strip():
        raise InvalidInput("q must not be empty")
    if len(q) > MAX_QUERY:
        raise InvalidInput(f"q must be at most {MAX_QUERY} characters")
    words = list(dict.fromkeys(w.lower() for w in WORD.findall(normal(q))))  # names are stored NFC
    if not words:
        raise InvalidInput("q must contain a letter or a digit")
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"q may hold at most {MAX_WORDS} words")
    return words


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["search", offset]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """A search's own ``next_cursor`` back into its offset; anything else is InvalidInput."""
    try:
        tag, offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if tag != "search" or type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
            raise ValueError
        return offset
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidInput("invalid cursor (it belongs to another listing)") from None


@dataclass(frozen=True)
class _Scope:
    owner_root: int
    shares: dict[int, tuple[str, str]]  # shared node id -> (its path, the best role on it)


class Search:
    def __init__(self, drive: Drive):
        self.drive = drive

    def find(self, user_id: int, q: str, limit: int = 50,
             cursor: str | None = None) -> tuple[list[SearchHit], str | None]:
        """One page of the nodes ``user_id`` may see whose names hold every word of ``q``,
        best first, and the cursor of the next page (or None)."""
        words = query_words(q)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        offset = decode_cursor(cursor) if cursor else 0
        with self.drive.sm() as s:
            scope = self._scope(s, user_id)
            hits = _engine_query(s.get_bind().dialect.name, words, scope).subquery("hits")
            visible = [Node.owner_id == user_id]
            for sid, (spath, _role) in scope.shares.items():
                visible += [Node.id == sid, under(Node.path, child_path(spath, sid))]
            q = (sa.select(Node, FileVersion)
                 .join(hits, hits.c.id == Node.id)
                 .outerjoin(FileVersion, FileVersion.id == Node.current_version_id)
                 .where(Node.live_name.is_not(None), Node.parent_id.is_not(None), sa.or_(*visible))
                 .order_by(hits.c.score.desc(), sa.func.length(Node.name), Node.name, Node.id)
                 .limit(min(limit, MAX_OFFSET - offset) + 1).offset(offset))
            rows = s.execute(q).all()
            page = rows[:limit]
            names = self._folder_names(s, [n for n, _v in page])
        out = [self._hit(user_id, n, v, scope, names) for n, v in page]
        more = len(rows) > limit and offset + limit < MAX_OFFSET
        return out, encode_cursor(offset + limit) if more else None

    @staticmethod
    def _scope(s, user_id: int) -> _Scope:
        root = s.execute(sa.select(User.root_id).where(User.id == user_id)).scalar_one()
        shares: dict[int, tuple[str, str]] = {}
        rows = s.execute(sa.select(Share.node_id, Share.role, Node.path)
                         .join(Node, Node.id == Share.node_id)
                         .where(Share.grantee_id == user_id, Node.live_name.is_not(None),
                                Node.path.is_not(None)))
        for nid, role, path in rows:
            shares[nid] = (path, role)
        return _Scope(root, shares)

    @staticmethod
    def _folder_names(s, nodes: list[Node]) -> dict[int, str]:
        ids = sorted({a for n in nodes for a in ancestors(n.path or "/")})
        names: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            names.update(s.execute(sa.select(Node.id, Node.name).where(Node.id.in_(ids[i:i + 500]))).all())
        return names

    @staticmethod
    def _hit(user_id: int, node: Node, v: FileVersion | None, scope: _Scope,
             names: dict[int, str]) -> SearchHit:
        chain = ancestors(node.path or "/")
        if node.owner_id == user_id:
            return SearchHit(info_of(node, v, Role.OWNER), [(a, names.get(a, "")) for a in chain], False)
        # Shown from the highest folder shared with the caller; the role is the best share's.
        held = [a for a in chain + [node.id] if a in scope.shares]
        role = max((scope.shares[a][1] for a in held), key=lambda r: ROLES[r])
        top = chain.index(held[0]) if held[0] != node.id else len(chain)
        return SearchHit(info_of(node, v, role), [(a, names.get(a, "")) for a in chain[top:]], True)


def _engine_query(dialect: str, words: list[str], scope: _Scope):
    """``SELECT id, score`` of the indexed nodes whose names hold every word as a word start;
    the score counts the words a name holds whole ("invoice" over "invoices"). A count, not
    the engines' relevance (BM25 costs SQLite a position list per hit: 40 ms for 2,000 hits),
    and the same on both engines."""
    subtrees = [scope.owner_root, *scope.shares]
    if dialect == "sqlite":
        within = " AND anc : ({})".format(" OR ".join(f'"{i}"' for i in subtrees)) if len(subtrees) <= MAX_SCOPES else ""
        match = "name : ({})".format(" AND ".join(f'"{w}"*' for w in words)) + within
        whole = {f"whole{i}": f'name : ("{w}"){within}' for i, w in enumerate(words)}
        score = " + ".join(f"(rowid IN (SELECT rowid FROM node_fts WHERE node_fts MATCH :{k}))" for k in whole)
        return (sa.text(f"SELECT rowid AS id, {score} AS score FROM node_fts WHERE node_fts MATCH :match")
                .bindparams(match=match, **whole).columns(id=sa.BigInteger, score=sa.Float))
    against = " ".join(f"+{MYSQL_MARK}{w}*" for w in words)
    if len(subtrees) <= MAX_SCOPES:
        against += " +({})".format(" ".join(f"{MYSQL_SUBTREE}{i}" for i in subtrees))
    whole = {f"whole{i}": f"{MYSQL_MARK}{w}" for i, w in enumerate(words)}
    score = " + ".join(f"(MATCH(words) AGAINST (:{k} IN BOOLEAN MODE) > 0)" for k in whole)
    return (sa.text(f"SELECT node_id AS id, {score} AS score "
                    "FROM node_words WHERE MATCH(words) AGAINST (:against IN BOOLEAN MODE)")
            .bindparams(against=against, **whole).columns(id=sa.BigInteger, score=sa.Float))

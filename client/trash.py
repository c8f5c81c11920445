"""The trash as the client shows it: each entry with the full path it had when it was deleted,
and the exact-path match that ``trash restore`` and ``trash purge`` use.

The server lists the trash's top entries (``GET /api/v1/trash``) with their folder's id. An
entry's path is that folder's path (walked up with ``GET /api/v1/nodes/{id}``) plus its name;
a folder that is itself in the trash lends the path it had. Where a folder moved after the
entry was deleted, the path is where that folder is now, which is also where a restore puts it.
"""

from __future__ import annotations

from .api import ClientError, NotFoundError
from .sync import Client


def trash_entries(c: Client) -> list[dict]:
    """The trash, newest first, each entry with ``path`` (None when its folder is gone for good)."""
    items = c.api.trash()
    by_id = {n["id"]: n for n in items}
    known: dict[int, str] = {}
    done: dict[int, str | None] = {}

    def path(n: dict, seen: frozenset = frozenset()) -> str | None:
        if n["id"] not in done:
            pid = n["parent_id"]
            parent = c.path_of(pid, known) if pid is not None else ""
            if parent is None and pid in by_id and pid not in seen:
                parent = path(by_id[pid], seen | {n["id"]})
            done[n["id"]] = None if parent is None else f"{parent}/{n['name']}"
        return done[n["id"]]

    return [{**n, "path": path(n)} for n in items]


def normalized(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


def match(entries: list[dict], path: str) -> list[dict]:
    """Entries whose original path is exactly ``path``, newest first; :class:`NotFoundError`
    when there is none (never an entry of the same name elsewhere)."""
    want = normalized(path)
    # deletion times are kept to the second: of two deleted in one second, the node made
    # later is taken as the newer (only one node holds a path at a time)
    hits = sorted((e for e in entries if e["path"] == want),
                  key=lambda e: (e.get("deleted_at") or "", e["id"]), reverse=True)
    if not hits:
        same = [e["path"] or e["name"] for e in entries if e["name"] == want.rpartition("/")[2]]
        hint = f"; entries of that name: {', '.join(same)}" if same else ""
        raise NotFoundError(f"nothing in the trash was at {want} (see `blockdrive trash ls`){hint}", 404)
    return hits


def pick(entries: list[dict], item: str) -> dict:
    """The one entry ``item`` names: a full path (``/a/b.txt``), an id, or (the older form) a
    bare name that only one entry has. Several at one path: refused, naming their ids."""
    if item.isdigit():
        hit = next((e for e in entries if e["id"] == int(item)), None)
        if hit is None:
            raise NotFoundError(f"no trash entry has id {item} (see `blockdrive trash ls`)", 404)
        return hit
    if item.startswith("/"):
        hits = match(entries, item)
    else:
        hits = [e for e in entries if e["name"] == item]
        if not hits:
            raise NotFoundError(f"nothing named {item!r} in the trash", 404)
    if len(hits) > 1:
        raise ClientError(f"{len(hits)} trash entries are {item!r}; give one's id "
                          f"({', '.join(str(e['id']) for e in hits)})")
    return hits[0]

"""The :class:`Client`: one server (an :class:`client.api.Api`), the local index, the chunker the
server announced; push, pull and sync come from :mod:`.push`, :mod:`.pull` and :mod:`.mirror`.

Remote paths start at the caller's root, except ``/Shared with me/NAME/…``: the folder or file
another user shared as ``NAME`` (``GET /api/v1/shared-with-me``), and the path below it. A
folder of one's own called ``Shared with me`` is still reached when no share has that NAME."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from storage.chunking import make_chunker
from storage.names import normal
from storage.wire import chunker_conf

from ..api import Api, ClientError, NotFoundError
from ..names import NameMap
from .index import Index
from .mirror import Mirror
from .plan import BATCH_BYTES, split_remote
from .pull import Puller
from .push import Pusher
from .reading import CHANGED, DELETED, NEXT_RUN
from .scan import ChangedWhileReading, FileScan, scan_file, scan_stat, stat_key

SCAN_TASK = 64                    # files per task of the hashing threads
SHARED = "Shared with me"         # the first component of a path into what others shared


def shared_parts(path: str) -> list[str] | None:
    """The components after ``/Shared with me`` in ``path`` (in NFC, as the server's names
    are: they are matched here), or None for a path of one's own."""
    parts = [normal(p) for p in path.split("/") if p]
    return parts[1:] if parts and parts[0] == SHARED else None


class Client(Pusher, Puller, Mirror):
    """Push, pull and sync against one server, remembering scans and synced ETags in ``index``."""

    def __init__(self, api: Api, index: Index | None = None, jobs: int = 4, progress: bool = False,
                 batch_bytes: int = BATCH_BYTES, names: NameMap | None = None):
        self.api, self.jobs, self.show_progress = api, max(1, jobs), progress
        self.names = names or NameMap()  # server names <-> this file system's
        self.batch_bytes = batch_bytes
        self.index = index or Index(None)
        self._chunker = None
        self.chunking_key = None

    # ---- chunking ---------------------------------------------------------------------

    def chunker(self):
        if self._chunker is None:
            c = self.api.chunking()
            conf = chunker_conf(c)
            self._chunker = make_chunker(conf)
            self.small_size = c["min"] if c["chunker"] == "fastcdc" else c["avg"]
            self.chunking_key = json.dumps(conf, sort_keys=True)
        return self._chunker

    def scan(self, path: str, checksum: bool = False) -> tuple[os.stat_result, FileScan, bool]:
        """The file's blocks: from the index when its stat is unchanged (unless ``checksum``)."""
        chunker = self.chunker()
        ap = os.path.abspath(path)
        st = os.stat(ap)
        if not checksum:
            hit = self.index.lookup(ap, self.chunking_key, st)
            if hit is not None:
                return st, hit, True
        return st, scan_file(ap, chunker, self.small_size), False

    def scan_many(self, paths: list[str], checksum: bool = False, known: dict | None = None,
                  skipped: list | None = None) -> list[FileScan | None]:
        """Scans of many files: the index answers for those whose stat is unchanged (one
        query for all, or ``known``: :meth:`Index.all` read once by a caller scanning in
        slices), the rest are read and hashed in parallel. With a ``skipped`` list, a file
        deleted or changed while it is read is recorded there (``{path, reason}``) and its
        scan is None, instead of stopping every other file."""
        self.chunker()
        if checksum:
            known = {}
        elif known is None:
            known = self.index.all(self.chunking_key)
        out: list[FileScan | None] = [None] * len(paths)
        todo = []
        for i, p in enumerate(paths):
            ap = os.path.abspath(p)
            row = known.get(ap)
            if row is not None:
                try:
                    st = os.stat(ap)
                except FileNotFoundError:
                    if skipped is None:
                        raise
                    skipped.append({"path": p, "reason": DELETED})
                    continue
                if tuple(row[:3]) == stat_key(st):
                    out[i] = FileScan(row[0], row[3], [tuple(b) for b in json.loads(row[4])], stat=stat_key(st))
                    continue
            todo.append(i)

        def one(i):
            try:
                return scan_stat(os.path.abspath(paths[i]), self._chunker, self.small_size)
            except (ChangedWhileReading, FileNotFoundError) as exc:
                if skipped is None:
                    raise
                return exc

        def some(idx):  # a task per SCAN_TASK files: a future per file costs more than a small file
            return [one(i) for i in idx]

        with ThreadPoolExecutor(self.jobs) as ex:
            results = [r for part in ex.map(some, [todo[k:k + SCAN_TASK] for k in range(0, len(todo), SCAN_TASK)])
                       for r in part]
        done = []
        for i, res in zip(todo, results):
            if isinstance(res, Exception):
                skipped.append({"path": paths[i], "reason": DELETED if isinstance(res, FileNotFoundError)
                                else CHANGED + NEXT_RUN})
            else:
                out[i] = res[1]
                done.append((os.path.abspath(paths[i]), self.chunking_key, *res))
        self.index.store(done)
        return out  # type: ignore[return-value]

    # ---- remote lookups ---------------------------------------------------------------

    def resolve(self, path: str) -> dict:
        """The node at the remote ``path`` (see the module's docstring for ``/Shared with me``);
        :class:`NotFoundError` if there is none."""
        rest = shared_parts(path)
        if rest is None:
            return self.api.resolve(path)
        if not rest:
            own = self.lookup_own(path)
            if own is not None:
                return own
            raise ClientError(f"/{SHARED} lists what others shared with you (`blockdrive shared`); "
                              f"name one: /{SHARED}/NAME/...")
        hits = [n for n in self.api.shared_with_me() if n["name"] == rest[0]]
        if not hits:
            own = self.lookup_own(path)
            if own is None:
                raise NotFoundError(f"nothing shared with you is named {rest[0]!r} (see `blockdrive shared`)", 404)
            return own
        if len(hits) > 1:
            raise ClientError(f"{len(hits)} shares are named {rest[0]!r} (nodes "
                              f"{', '.join(str(n['id']) for n in hits)}); ask an owner to rename theirs")
        node, walked = hits[0], f"/{SHARED}/{rest[0]}"
        for name in rest[1:]:
            found = None
            if node["kind"] == "folder":
                found = next((c for c in self.api.children(node["id"]) if c["name"] == name), None)
            walked += "/" + name
            if found is None:
                raise NotFoundError(f"look up {walked}: 404 not found", 404)
            node = found
        return node

    def lookup(self, path: str) -> dict | None:
        try:
            return self.resolve(path)
        except NotFoundError:
            return None

    def lookup_own(self, path: str) -> dict | None:
        """The node at ``path`` from the caller's own root, or None."""
        try:
            return self.api.resolve(path)
        except NotFoundError:
            return None

    def path_of(self, node_id: int, known: dict[int, str] | None = None) -> str | None:
        """The path of the live node ``node_id`` from the caller's root ("" for the root), or
        None when it is in the trash or gone; ``known`` caches paths by id across calls."""
        known = {} if known is None else known
        chain: list[dict] = []
        nid: int | None = node_id
        while nid is not None and nid not in known:
            try:
                node = self.api.node(nid)
            except NotFoundError:
                return None
            chain.append(node)
            nid = node["parent_id"]
        prefix = "" if nid is None else known[nid]
        for node in reversed(chain):
            prefix = "" if node["parent_id"] is None else f"{prefix}/{node['name']}"
            known[node["id"]] = prefix
        return known[node_id]

    def ensure_folder(self, path: str) -> dict:
        """The folder at ``path``, created with its parents if needed (never a share itself,
        nor ``/Shared with me``: only folders below a share, unless that is a folder of one's own)."""
        rest = shared_parts(path)
        if rest is not None and len(rest) <= 1 and self.lookup_own("/" + SHARED) is None:
            return self.resolve(path)
        node = self.lookup(path)
        if node is not None:
            if node["kind"] != "folder":
                raise ClientError(f"{path} is a file, not a folder")
            return node
        parent_path, name = split_remote(path)
        parent = self.ensure_folder(parent_path)
        (res,) = self.api.folders([{"parent_id": parent["id"], "name": name}])
        if "error" in res:
            raise ClientError(f"create {path}: {res['error'].get('detail')}")
        return {"id": res["ok"]["id"], "kind": "folder", "name": name}

    def server_key(self) -> str:
        return self.api.identity


"""The :class:`Client`: one server (an :class:`client.api.Api`), the local index, the chunker the
server announced; push, pull and sync come from :mod:`.push`, :mod:`.pull` and :mod:`.mirror`."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from storage.chunking import make_chunker
from storage.wire import chunker_conf

from ..api import Api, ClientError, NotFoundError
from .index import Index
from .mirror import Mirror
from .plan import BATCH_BYTES, split_remote
from .pull import Puller
from .push import Pusher
from .scan import FileScan, scan_file, scan_stat, stat_key

SCAN_TASK = 64                    # files per task of the hashing threads


class Client(Pusher, Puller, Mirror):
    """Push, pull and sync against one server, remembering scans and synced ETags in ``index``."""

    def __init__(self, api: Api, index: Index | None = None, jobs: int = 4, progress: bool = False,
                 batch_bytes: int = BATCH_BYTES):
        self.api, self.jobs, self.show_progress = api, max(1, jobs), progress
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

    def scan_many(self, paths: list[str], checksum: bool = False, known: dict | None = None) -> list[FileScan]:
        """Scans of many files: the index answers for those whose stat is unchanged (one
        query for all, or ``known``: :meth:`Index.all` read once by a caller scanning in
        slices), the rest are read and hashed in parallel."""
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
                st = os.stat(ap)
                if tuple(row[:3]) == stat_key(st):
                    out[i] = FileScan(row[0], row[3], [tuple(b) for b in json.loads(row[4])])
                    continue
            todo.append(i)

        def some(idx):  # a task per SCAN_TASK files: a future per file costs more than a small file
            return [scan_stat(os.path.abspath(paths[i]), self._chunker, self.small_size) for i in idx]

        with ThreadPoolExecutor(self.jobs) as ex:
            results = [r for part in ex.map(some, [todo[k:k + SCAN_TASK] for k in range(0, len(todo), SCAN_TASK)])
                       for r in part]
        for i, (_, sc) in zip(todo, results):
            out[i] = sc
        self.index.store((os.path.abspath(paths[i]), self.chunking_key, st, sc) for i, (st, sc) in zip(todo, results))
        return out  # type: ignore[return-value]

    # ---- remote lookups ---------------------------------------------------------------

    def lookup(self, path: str) -> dict | None:
        try:
            return self.api.resolve(path)
        except NotFoundError:
            return None

    def ensure_folder(self, path: str) -> dict:
        """The folder at ``path``, created with its parents if needed."""
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


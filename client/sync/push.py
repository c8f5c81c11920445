"""Push: send a file's blocks the server lacks, then commit the version.

Cut the local file with the server's own chunker, ask which blocks the server lacks, send only
those (batched, a bounded number of requests in flight), then commit the version with If-Match
on the ETag we saw (or "must not exist" for a new file). A push that died half-way resumes by
simply running again: ``missing`` leaves out every block the server already holds for us,
including those the dead push sent (they are pinned in our block session on the server).
The first ``missing`` request also tells the server the files' sizes: files that cannot fit
the quota stop the push with :class:`QuotaError` before any block is sent.

:class:`Uploader` sends blocks in the background and commits groups of files as soon as their
blocks are in; :class:`CommitQueue` groups files into batch commits. Both serve sync too.

A file that changes or goes away after its scan is not committed: the uploader reads blocks
back only from files still as scanned (:mod:`.reading`) and says which files it could not send
as they were (:meth:`Uploader.why_not_ready`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Callable

from storage.wire import MAX_BATCH_FILES

from ..api import MISSING_PER_CALL, ClientError, ConflictError
from .plan import blocks_to_send, group_batches, split_remote
from .progress import Progress, Stats
from .reading import CHANGED, DELETED, BlockReader
from .scan import ChangedWhileReading, FileScan

COMMIT_FILES = MAX_BATCH_FILES


class QuotaError(ClientError):
    """The files would not fit the quota: the server said so before any block was sent."""
COMMIT_JSON = 768 * 1024          # stay under the server's max_json_bytes (1 MiB by default)


class Pusher:
    """The push side of :class:`client.sync.Client` (it provides ``api``, ``index``, ``scan``,
    ``lookup``, ``ensure_folder``, ``names``, ``server_key`` and ``chunking_key``)."""

    def send_blocks(self, files: list[tuple[str, FileScan]], stats: Stats, progress: Progress,
                    parent_id: int | None = None) -> None:
        """Send the blocks of ``files`` the server lacks (for folder ``parent_id``, whose owner's
        quota they must fit); :class:`ChangedWhileReading` when one of them changed or went away
        since its scan (it must not be committed)."""
        with Uploader(self, stats, progress, parent_id) as up:
            up.add(files)
            up.finish()
        for path, sc in files:
            why = up.why_not_ready(path, sc)
            if why is not None:
                self.index.forget([path])
                raise ChangedWhileReading(f"skipped {path}: {why}; nothing was committed (push it again)")

    def upload_groups(self, groups: list[list[tuple[str, FileScan]]], commit: Callable | None, stats: Stats,
                      progress: Progress, parent_id: int | None = None) -> None:
        """Send the missing blocks of every group, then ``commit(i)`` each group on one thread
        as soon as its blocks are in, so commits overlap the sending of later groups."""
        with Uploader(self, stats, progress, parent_id) as up:
            for g in groups:
                up.add(g)
            up.commit_groups(groups, commit)

    def push(self, local: str, remote: str, force: bool = False, checksum: bool = False) -> Stats:
        """Upload one local file to the remote path (a folder path ending in '/' or naming an
        existing folder takes the file's own name)."""
        if not os.path.lexists(local):
            raise ClientError(f"{local}: no such file")
        if not os.path.isfile(local):
            raise ClientError(f"{local}: not a file (use sync for folders)")
        node = self.lookup(remote) if remote.strip("/") else None
        if remote.endswith("/") or not remote.strip("/") or (node is not None and node["kind"] == "folder"):
            remote = remote.rstrip("/") + "/" + self.names.to_remote(os.path.basename(local))
            node = self.lookup(remote)
        remote = "/" + remote.strip("/")
        parent_path, name = split_remote(remote)
        stats = Stats(files=1)
        progress = Progress(self.show_progress, f"push {name}")
        try:
            try:
                st, scan, _ = self.scan(local, checksum)
            except (ChangedWhileReading, FileNotFoundError) as exc:
                why = DELETED if isinstance(exc, FileNotFoundError) else CHANGED
                raise ChangedWhileReading(f"skipped {local}: {why}; nothing was sent (push it again)") from None
            self.index.store([(os.path.abspath(local), self.chunking_key, st, scan)])
            stats.bytes_total = scan.size
            progress.total(scan.size)
            current = node["etag"] if node is not None and node["kind"] == "file" else None
            if node is not None and node["kind"] != "file":
                raise ClientError(f"{remote} is a folder")
            key = self.server_key()
            last = self.index.synced(key, [remote]).get(remote)
            if current == scan.sha256:
                stats.unchanged.append(remote)
                progress.add(skipped=scan.size)
                stats.bytes_skipped += scan.size
                self.index.set_synced(key, [(remote, current)])
                return stats
            if current is not None and last is not None and last != current and not force:
                raise ConflictError(
                    f"{remote} changed on the server since you last synced it: you had {last}, the server "
                    f"now has version {node.get('version_id')} ({current}); your local copy is {scan.sha256}. "
                    f"Nothing was sent; pull it first, or push --force to make yours the newest version.")
            parent = self.ensure_folder(parent_path)
            self.send_blocks([(os.path.abspath(local), scan)], stats, progress, parent["id"])
            try:
                res = self.api.commit(parent["id"], name, scan.hashes, scan.size, scan.sha256,
                                      if_match=current, if_none_match=current is None)
            except ConflictError as exc:
                now = self.lookup(remote)
                if now is None or now.get("etag") != scan.sha256:
                    raise self._conflict(remote, current, scan.sha256, now, exc) from None
                res = now  # our own commit, retried after its answer was lost
            stats.requests += 1
            stats.uploaded.append(remote)
            self.index.set_synced(key, [(remote, res.get("etag") or scan.sha256)])
            return stats
        finally:
            progress.close()

    @staticmethod
    def _conflict(remote: str, expected: str | None, mine: str, now: dict | None,
                  exc: ConflictError) -> ConflictError:
        theirs = f"version {now.get('version_id')} ({now.get('etag')})" if now else "nothing"
        had = expected or "no file"
        return ConflictError(f"{remote} changed on the server while pushing: expected {had}, the server now has "
                             f"{theirs}; your version {mine} was not committed (its blocks are kept for a retry)",
                             exc.status, exc.problem)



class CommitQueue:
    """Files waiting to be committed, grouped into requests (at most ``COMMIT_FILES`` files
    and about ``COMMIT_JSON`` bytes of JSON each); each full group goes to the uploader,
    which commits it as soon as its blocks are in."""

    def __init__(self, up: "Uploader", commit: Callable, parent_id: Callable[[str], int]):
        self.up, self.commit, self.parent_id = up, commit, parent_id
        self.queued: dict[str, str | None] = {}  # rel -> If-Match etag (None: must not exist)
        self.cur: list[tuple[str, FileScan, dict]] = []
        self.json_size = 0

    def add(self, rel: str, sc: FileScan, etag: str | None) -> None:
        entry = {"parent_id": self.parent_id(rel), "name": PurePosixPath(rel).name, "blocks": sc.hashes,
                 "size": sc.size, "sha256": sc.sha256, **({"if_match": etag} if etag else {"if_none_match": True})}
        n = 160 + len(rel) + 67 * len(sc.blocks)
        if self.cur and (len(self.cur) >= COMMIT_FILES or self.json_size + n > COMMIT_JSON):
            self.flush()
        self.queued[rel] = etag
        self.cur.append((rel, sc, entry))
        self.json_size += n

    def flush(self) -> None:
        if self.cur:
            group, self.cur, self.json_size = self.cur, [], 0
            self.up.commit_later([sc for _, sc, _ in group], lambda: self.commit(group))


class Uploader:
    """Sends blocks in the background while the caller goes on (scanning more files, say).

    ``add(files)`` asks which of their blocks the server lacks (leaving out those already
    queued) and queues them in batched requests, ``jobs`` in flight; it blocks only when that
    many batches are waiting. Sending a block early is never wasted on content the server
    holds for us: ``missing`` leaves those out. ``commit_later`` commits a group of files on
    the commit thread as soon as the batches holding its blocks are done; ``finish`` waits
    for all of it."""

    def __init__(self, client: "Pusher", stats: Stats, progress: Progress, parent_id: int | None = None):
        self.c, self.stats, self.progress = client, stats, progress
        self.parent_id = parent_id  # the folder the files go to: its owner's quota must hold them
        self.lock = threading.Lock()
        self.future_of: dict[str, object] = {}
        self.futures: list = []
        self.sem = threading.BoundedSemaphore(client.jobs + 2)  # batches sent or waiting: memory stays bounded
        self.pool = ThreadPoolExecutor(client.jobs)
        self.committer: ThreadPoolExecutor | None = None
        self.data: dict[str, bytes] = {}  # bytes of small files, read while hashing, to send
        self.commits: list = []
        self.reader = BlockReader()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            for f in self.futures + self.commits:
                f.cancel()
        if self.committer is not None:
            self.committer.shutdown(wait=True)
        self.pool.shutdown(wait=True)

    def add(self, files: list[tuple[str, FileScan]]) -> None:
        st = self.stats
        hashes = [h for _, sc in files for h in sc.hashes if h not in self.future_of]
        missing = self._missing(files, hashes) if hashes else set()
        st.requests += 1 if hashes else 0
        todo = blocks_to_send(files, missing - self.future_of.keys())
        self.reader.learn(files, missing | {h for _, sc in files for h in sc.hashes if h in self.future_of})
        wanted = {h for h, *_ in todo}
        for _, sc in files:  # small files' bytes: kept for sending if missing, dropped either way
            if sc.data is not None:
                if sc.hashes[0] in wanted:
                    self.data[sc.hashes[0]] = sc.data
                sc.data = None
        need = sum(n for _, _, _, n in todo)
        total = sum(sc.size for _, sc in files)
        st.bytes_skipped += total - need
        st.blocks_skipped += sum(len(sc.blocks) for _, sc in files) - len(todo)
        self.progress.add(skipped=total - need)
        for batch in group_batches(todo, self.c.batch_bytes):
            self.sem.acquire()
            for f in self.futures:  # fail fast: a batch that failed stops the rest
                if f.done() and f.exception() is not None:
                    self.sem.release()
                    f.result()
            fut = self.pool.submit(self._bounded, batch)
            self.futures.append(fut)
            for h, *_ in batch:
                self.future_of[h] = fut

    def _missing(self, files: list[tuple[str, FileScan]], hashes: list[str]) -> set[str]:
        """The blocks of ``hashes`` the server lacks, asked together with whether ``files``
        fit the quota: a :class:`QuotaError` before any of their blocks is sent if not."""
        if len(files) > MISSING_PER_CALL:  # more than one request takes: the commit still checks
            return self.c.api.missing(hashes)
        planned = [{"size": sc.size, "blocks": len(sc.blocks),
                    **({"parent_id": self.parent_id} if self.parent_id is not None else {})} for _, sc in files]
        try:
            return self.c.api.missing_if_room(hashes, planned)
        except ClientError as exc:
            p = exc.problem
            if exc.status != 413 or p.get("available") is None:
                raise
            raise QuotaError(f"not enough room: {len(files)} file(s) need {p.get('needed')} bytes, "
                             f"{p.get('available')} available (quota {p.get('quota')}); nothing was sent",
                             exc.status, p) from None

    def skip(self, files: list[tuple[str, FileScan]]) -> None:
        """Count ``files`` as skipped: the server has them as they are."""
        n = sum(sc.size for _, sc in files)
        self.stats.bytes_skipped += n
        self.stats.blocks_skipped += sum(len(sc.blocks) for _, sc in files)
        self.progress.add(skipped=n)
        for _, sc in files:
            sc.data = None

    def _bounded(self, batch) -> None:
        try:
            self._send(batch)
        finally:
            self.sem.release()

    def _send(self, batch) -> None:
        while True:
            payload, came_from = self.reader.read(batch, self.data)
            if not payload:
                return
            try:
                self.c.api.put_blocks(payload)
                break
            except ClientError as exc:
                bad = exc.problem.get("block") if exc.status == 422 else None
                if bad not in came_from:
                    raise
                # its stat is as scanned, its bytes are not: the server checks every block
                self.reader.fail(came_from[bad], CHANGED)
        for h, _ in payload:
            self.data.pop(h, None)
        n = sum(len(r) for _, r in payload)
        self.progress.add(sent=n)
        with self.lock:
            self.stats.blocks_sent += len(payload)
            self.stats.bytes_sent += n
            self.stats.requests += 1

    def why_not_ready(self, path: str, sc: FileScan) -> str | None:
        """Why the file at ``path`` (scanned as ``sc``) must not be committed: it changed or
        went away since its scan, or a block of it could not be sent; None if it may be."""
        return self.reader.why_not_ready(path, sc)

    def wait(self, hashes) -> None:
        for f in {id(self.future_of[h]): self.future_of[h] for h in hashes if h in self.future_of}.values():
            f.result()

    def commit_later(self, scans: list[FileScan], commit: Callable[[], None]) -> None:
        """Run ``commit()`` on the commit thread once every block of ``scans`` is sent.
        Commits run one at a time, in the order given."""
        if self.committer is None:
            self.committer = ThreadPoolExecutor(1, thread_name_prefix="bd-commit")

        def run():
            self.wait(h for sc in scans for h in sc.hashes)
            commit()
        self.commits.append(self.committer.submit(run))

    def finish(self) -> None:
        """Wait for every commit and every batch; the first error is raised, the rest of the
        queued commits are cancelled."""
        try:
            for f in self.commits:
                f.result()
        except BaseException:
            for f in self.commits:
                f.cancel()
            raise
        finally:
            if self.committer is not None:
                self.committer.shutdown(wait=True)
                self.committer = None
        for f in self.futures:
            f.result()

    def commit_groups(self, groups: list[list[tuple[str, FileScan]]], commit: Callable | None) -> None:
        """``commit(i)`` for each group once its blocks are in (no commit: just wait)."""
        for i, g in enumerate(groups):
            self.commit_later([sc for _, sc in g], (lambda i=i: commit(i)) if commit is not None else (lambda: None))
        self.finish()

"""Pull: fetch only the blocks the local copy lacks, and replace it atomically.

Read the version's block map; blocks the local copy already has (same hash) are copied from
it, the rest are fetched with ranged reads guarded by If-Range; the result is assembled in a
temporary file next to the target (a short name of its own, so a target whose name is as long
as the file system allows still has one), its SHA-256 checked, then renamed over the target.
Nothing half-written is ever left at the target path. An older version (``version``) is
pulled the same way; it is not recorded as synced, so the next push of the file is checked
against the server's current version as before.

A local copy that changes (or appears) while the pull runs is left as it is: the pull is
skipped, saying so. A block copied from the local copy is checked against its hash first, so
one that changed under us is fetched instead.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from ..api import ClientError, ConflictError, NotFoundError
from .plan import coalesce_ranges
from .progress import Progress, Stats
from .reading import CHANGED
from .scan import ChangedWhileReading, FileScan, stat_key


class Puller:
    """The pull side of :class:`client.sync.Client` (it provides ``api``, ``index``, ``jobs``,
    ``scan``, ``chunker``, ``names``, ``server_key`` and ``chunking_key``)."""

    def pull(self, remote: str, local: str, checksum: bool = False, force: bool = False,
             version: int | None = None) -> Stats:
        node = self.resolve(remote)
        if node["kind"] != "file":
            raise ClientError(f"{remote} is a folder (pull takes a file)")
        if os.path.isdir(local):
            local = os.path.join(local, self.names.to_local(node["name"]))
        remote = "/" + remote.strip("/")
        if version is not None and not any(v["id"] == version for v in self.api.versions(node["id"])):
            raise NotFoundError(f"{remote} has no version {version} (see `blockdrive versions {remote}`)", 404)
        bm = self.api.block_map(node["id"], version)
        stats = Stats(files=1, bytes_total=bm["size"])
        progress = Progress(self.show_progress, f"pull {node['name']}")
        progress.total(bm["size"])
        key = self.server_key()
        try:
            have: dict[str, tuple[int, int]] = {}
            seen = None  # the local copy's stat when we looked: it must be so when replaced
            try:
                st, scan, _ = self.scan(local, checksum) if os.path.isfile(local) else (None, None, None)
            except ChangedWhileReading:
                raise ChangedWhileReading(f"skipped {local}: {CHANGED}; nothing was written (pull again)") from None
            except FileNotFoundError:
                scan = None  # gone since we looked: nothing to keep, nothing to reuse
            if scan is not None:
                seen = stat_key(st)
                if scan.sha256 == bm["sha256"]:
                    stats.unchanged.append(local)
                    stats.bytes_skipped = bm["size"]
                    if version is None:
                        self.index.set_synced(key, [(remote, bm["sha256"])])
                    return stats
                last = self.index.synced(key, [remote]).get(remote)
                if last is not None and last != scan.sha256 and not force:
                    raise ConflictError(f"{local} has local changes ({scan.sha256}) not pushed since version {last}; "
                                        f"the server has {bm['sha256']}. Nothing was written; push it, or pull "
                                        f"--force to replace it.")
                have = {h: (off, n) for h, off, n in scan.blocks}
            self._assemble(node["id"], bm, local, have, stats, progress, version, seen)
            st = os.stat(local)
            scan = FileScan(bm["size"], bm["sha256"], [tuple(b) for b in bm["blocks"]])
            self.chunker()
            self.index.store([(os.path.abspath(local), self.chunking_key, st, scan)])
            if version is None:
                self.index.set_synced(key, [(remote, bm["sha256"])])
            return stats
        finally:
            progress.close()

    def fetch(self, node_id: int, local: str, seen: tuple[int, int, int] | None = None) -> tuple[os.stat_result,
                                                                                                 FileScan]:
        """Write node ``node_id``'s current version at ``local`` (replaced atomically), fetching
        only the blocks the file already there lacks; its stat and scan, also put in the index.
        ``seen``: the stat ``local`` must still have when it is replaced (None: it must not
        exist), else :class:`ChangedWhileReading` and nothing is written; :class:`ConflictError`
        if the file changed on the server while it was read."""
        bm = self.api.block_map(node_id)
        have: dict[str, tuple[int, int]] = {}
        if seen is not None:
            st, scan, _ = self.scan(local)
            if stat_key(st) != seen:
                raise ChangedWhileReading(f"skipped {local}: {CHANGED}; nothing was written")
            have = {h: (off, n) for h, off, n in scan.blocks}
        self._assemble(node_id, bm, local, have, Stats(files=1, bytes_total=bm["size"]), Progress(False), None, seen)
        st = os.stat(local)
        scan = FileScan(bm["size"], bm["sha256"], [tuple(b) for b in bm["blocks"]])
        self.chunker()
        self.index.store([(os.path.abspath(local), self.chunking_key, st, scan)])
        return st, scan

    def _assemble(self, node_id: int, bm: dict, local: str, have: dict[str, tuple[int, int]], stats: Stats,
                  progress: Progress, version: int | None = None, seen: tuple[int, int, int] | None = None) -> None:
        """Build the version in a temporary file and rename it over ``local``, unless ``local``
        is no longer as it was when looked at (``seen``: its stat, None when there was none)."""
        target = os.path.abspath(local)
        # not derived from the target's name: that may already be as long as a name can be
        tmp = os.path.join(os.path.dirname(target), f".blockdrive-{uuid.uuid4().hex[:12]}.part")
        fetch: list[tuple[int, int]] = []
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, bm["size"])
            try:
                old = open(target, "rb") if have else None
            except FileNotFoundError:
                old = None  # gone since it was scanned: every block is fetched
            try:
                for h, off, n in bm["blocks"]:
                    raw = None
                    if old is not None and h in have:
                        src_off, src_n = have[h]
                        old.seek(src_off)
                        raw = old.read(src_n)
                    # a local block that no longer holds what was scanned is fetched instead
                    if raw is not None and len(raw) == n and hashlib.sha256(raw).hexdigest() == h:
                        os.pwrite(fd, raw, off)
                        stats.bytes_skipped += n
                        progress.add(skipped=n)
                    else:
                        fetch.append((off, n))
            finally:
                if old is not None:
                    old.close()
            ranges = coalesce_ranges(fetch)

            def get(rng):
                a, b = rng
                data = self.api.read_range(node_id, a, b, bm["sha256"], version)
                os.pwrite(fd, data, a)
                progress.add(sent=len(data))  # for a pull, "sent" is what the server sent us
                return len(data)

            with ThreadPoolExecutor(self.jobs) as ex:
                for n in ex.map(get, ranges):
                    stats.bytes_received += n
                    stats.requests += 1
            os.fsync(fd)
            os.close(fd)
            fd = -1
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                while chunk := f.read(4 * 1024 * 1024):
                    h.update(chunk)
            if h.hexdigest() != bm["sha256"]:
                raise ClientError(f"downloaded content does not match its SHA-256 ({h.hexdigest()} != "
                                  f"{bm['sha256']}); {local} was left untouched")
            try:
                now = os.stat(target)
            except FileNotFoundError:
                now = None  # deleted here meanwhile: nothing of it to keep
            if now is not None and stat_key(now) != seen:
                raise ChangedWhileReading(f"skipped {local}: changed while pulling; it was left as it is and "
                                          f"nothing was written (pull again)")
            if now is not None:
                os.chmod(tmp, now.st_mode & 0o7777)
            os.replace(tmp, target)
            tmp = None
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


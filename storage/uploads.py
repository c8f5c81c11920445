"""Resumable uploads (the domain side of tus 1.0) and the block API of delta sync.

Resumable uploads cut and store blocks as the bytes arrive, so a resumed upload never stores
a block twice and no whole file is ever spooled:

- each append runs the chunker over ``tail + body``, where the tail is the part of the
  previous append after its last content-defined cut. Every chunk but the last ends at a
  real cut (FastCDC's cut depends only on the bytes since the chunk's start), so it is final
  and stored now; the last one may have been cut only because the data ran out, so it
  becomes the new tail (at most one chunk, < ``chunk_max``), stored on the hot backend under
  ``uploads/<session>/<offset>.tail`` where every server process can read it. The blocks of
  a resumable upload are thus exactly those of the same bytes sent in one PUT.
- stored blocks go into packs like any upload's; their rows are inserted with no refs and
  pinned (``upload_pins``) so GC keeps them; the session's ordered block list is
  ``upload_chunks``. The session's offset moves with one conditional UPDATE, so two appends
  racing at the same offset cannot both land.
- the whole-file SHA-256 cannot be carried between requests (hashlib state does not
  serialise): when one append carried the whole file it is hashed on the fly, otherwise it
  is computed at the end by streaming the stored blocks back.
- when the last byte arrives the session becomes a new file or a new version in one
  transaction (quota charged, refs taken, pins released). Sessions not finished by
  ``expires_at`` expire: pins, block list and tail are released (:meth:`Uploads.expire`).

The block API: a client asks which of its blocks the server lacks, PUTs each by its SHA-256,
then commits a version as a list of hashes. The "missing" answer treats as present only the
blocks the caller already owns (refs in versions of their own files) or sent in their block
session, so it never reveals other users' content; a block sent that the server already has
from someone else is deduplicated silently after its bytes arrived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import crashpoints, quota
from .blockindex import Ingested
from .packstore import BlockLocation
from .clock import now
from .drive import Drive, PutResult
from .tree import node_info, role_of
from .versions import NewVersion, Ref, commit_version
from .errors import (ChecksumMismatch, Conflict, ContentMismatch, Gone, InvalidInput, NotFound,
                     OffsetMismatch, QuotaExceeded, RetryLater, SessionLimit)
from .models import Block, FileVersion, Node, Pack, UploadChunk, UploadPin, UploadSession, User, VersionBlock
from .names import validate_name
from .wire import MAX_HASHES, chunking_params
from .states import UploadKind, UploadState

CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
# A session's list of parts lives in its meta column (64 KiB of text on MySQL): at most this
# many runs of equal-sized parts
MAX_PART_RUNS = 2000
LOOKUP_BATCH = 64


@dataclass(frozen=True)
class SessionInfo:
    id: str
    user_id: int
    parent_id: int
    name: str
    offset: int
    length: int
    state: str
    expires_at: dt.datetime
    node_id: int | None
    metadata: dict
    # the numbered parts appended so far, in order, each (number, bytes received); only
    # appends given a ``part`` number are listed
    parts: tuple[tuple[int, int], ...] = ()


def _info(us: UploadSession) -> SessionInfo:
    meta = json.loads(us.meta or "{}")
    return SessionInfo(us.id, us.user_id, us.parent_id, us.name, us.offset, us.length or 0, us.state,
                       us.expires_at, us.node_id, meta.get("metadata", {}),
                       tuple((first + i, size) for first, count, size in meta.get("parts", ()) for i in range(count)))


def _add_part(runs: list[list[int]], number: int, size: int) -> None:
    """Record part ``number`` of ``size`` bytes in ``runs``: [first number, count, size] of
    consecutive parts of one size, so a client sending equal parts costs one run."""
    if runs and runs[-1][0] + runs[-1][1] == number and runs[-1][2] == size:
        runs[-1][1] += 1
    else:
        runs.append([number, 1, size])


class _Concat:
    """``head`` bytes, then ``body``; counts and checksums what comes from the body."""

    def __init__(self, head: bytes, body: BinaryIO, limit: int, algo: str | None):
        self.head, self.body, self.limit = memoryview(head), body, limit
        self.received = 0
        self.digest = CHECKSUMS[algo]() if algo else None

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        if self.head.nbytes:
            n = min(len(view), self.head.nbytes)
            view[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        want = min(len(view), self.limit + 1 - self.received)
        if want <= 0:
            raise InvalidInput("more bytes sent than the upload's declared length")
        data = self.body.read(want)
        if not data:
            return 0
        n = len(data)
        if self.received + n > self.limit:
            raise InvalidInput("more bytes sent than the upload's declared length")
        view[:n] = data
        self.received += n
        if self.digest is not None:
            self.digest.update(data)
        return n


class Uploads:
    def __init__(self, drive: Drive):
        self.drive, self.store = drive, drive.blocks
        srv = drive.config["server"]
        self.expire_seconds = srv["upload_expire_seconds"]
        self.max_upload = srv["max_upload_bytes"] or None
        q = drive.config["quota"]
        self.floor = q["block_floor_bytes"]
        self.session_seconds = q["block_session_seconds"]
        self.max_session_blocks = q["block_session_max_blocks"]

    # ---- resumable uploads -----------------------------------------------------------

    def create(self, user_id: int, parent_id: int, name: str, length: int, metadata: dict | None = None,
               kind: UploadKind = UploadKind.TUS, sid: str | None = None) -> SessionInfo:
        """Open a resumable upload of ``length`` bytes to ``name`` in folder ``parent_id``,
        reserving them in the uploader's quota. A ``tus`` session becomes the file when its
        last byte arrives; a ``chunked`` one only on :meth:`finish`. ``sid`` names the session
        (at most 32 characters) where the protocol lets the client name it: Conflict while a
        live session holds that name, and an ended one (finished, aborted, expired) gives it
        up."""
        name = validate_name(name)
        if not isinstance(length, int) or length < 0:
            raise InvalidInput("the upload's length must be a whole number of bytes")
        if self.max_upload is not None and length > self.max_upload:
            raise InvalidInput(f"uploads are limited to {self.max_upload} bytes")
        if sid is not None and not (isinstance(sid, str) and 0 < len(sid) <= 32):
            raise InvalidInput("an upload session's name is 1 to 32 characters")
        self._check_room(user_id, parent_id, name, length)
        if sid is not None:
            self._free_name(user_id, sid)
        t = now()
        us = UploadSession(id=sid or uuid.uuid4().hex, user_id=user_id, parent_id=parent_id, name=name, offset=0,
                           length=length, state=UploadState.ACTIVE, kind=kind, reserved_bytes=length,
                           meta=json.dumps({"metadata": metadata or {}, "tail": None, "seq": 0, "whole": None}),
                           created_at=t, expires_at=t + dt.timedelta(seconds=self.expire_seconds))
        try:
            with self.drive.sm() as s, s.begin():
                # The uploader holds the reservation (an editor's unfinished uploads never hold
                # the folder owner's quota); the finished version is charged to the owner.
                quota.reserve(s, user_id, length, self.floor)
                s.add(us)
        except sa.exc.IntegrityError:
            if sid is None:
                raise
            raise Conflict(f"upload {sid} was opened by another request meanwhile") from None
        return _info(us)

    def _free_name(self, user_id: int, sid: str) -> None:
        """Make ``sid`` free for a new session of ``user_id``: an ended session of theirs
        holds nothing (its pins, block list and reservation went when it ended), so its row
        goes; a live one keeps the name."""
        with self.drive.sm() as s:
            us = s.get(UploadSession, sid)
            if us is None:
                return
            if us.user_id != user_id or us.kind == UploadKind.BLOCKS:
                raise Conflict(f"upload {sid} exists")
            live = us.state == UploadState.ACTIVE
            if live and us.expires_at > now():
                raise Conflict(f"upload {sid} exists")
        if live:
            self.abort(sid, state=UploadState.EXPIRED)
        with self.drive.sm() as s, s.begin():
            s.execute(sa.delete(UploadSession).where(UploadSession.id == sid, UploadSession.state != UploadState.ACTIVE))

    def _check_room(self, user_id: int, parent_id: int, name: str, length: int) -> None:
        """Fail early (editor rights on the folder, the owner's quota) before any byte is
        sent. The version this upload replaces stays as an old version: it frees nothing."""
        with self.drive.sm() as s:
            _parent, _existing, owner = self.drive.put_target(s, user_id, parent_id, name, None, False)
            room = owner.quota_bytes - owner.used_bytes - owner.pending_bytes
            owner_id = owner.id
        if length > room:
            self.drive.refuse(owner_id, length)

    def _load(self, s: Session, user_id: int, sid: str, kind: str = UploadKind.TUS) -> UploadSession:
        us = s.get(UploadSession, sid) if isinstance(sid, str) and len(sid) <= 32 else None
        if us is None or us.user_id != user_id or us.kind != kind:
            raise NotFound(f"upload {sid} not found")
        if us.state in ("expired", "aborted") or (us.state == UploadState.ACTIVE and us.expires_at <= now()):
            raise Gone(f"upload {sid} has expired or was terminated")
        return us

    def get(self, user_id: int, sid: str, kind: UploadKind = UploadKind.TUS) -> SessionInfo:
        with self.drive.sm() as s:
            info = _info(self._load(s, user_id, sid, kind))
        if kind == UploadKind.TUS and info.state == UploadState.ACTIVE and info.offset == info.length:
            # Every byte arrived, but the process died between the last append's commit and
            # the version's: make the version now. A client told by the offset that the
            # upload is complete must find its file.
            try:
                self.finish(user_id, sid)
            except (Conflict, QuotaExceeded):
                pass  # finished meanwhile by another request; or aborted, and _load says Gone
            with self.drive.sm() as s:
                info = _info(self._load(s, user_id, sid))
        return info

    def append(self, user_id: int, sid: str, offset: int, body: BinaryIO, declared: int | None = None,
               checksum: tuple[str, bytes] | None = None, kind: UploadKind = UploadKind.TUS,
               part: int | None = None) -> tuple[SessionInfo, PutResult | None]:
        """Add ``body`` at ``offset``. ``declared`` is how many bytes the client said it would
        send: fewer arriving (a dropped connection) keeps what came, unless a checksum was
        declared, which then cannot be verified and the chunk is refused. ``part`` numbers the
        append in the session's list of parts (with the bytes that arrived); parts come in
        increasing order, once (Conflict otherwise). Returns the session and, when this
        append completed a tus upload, the file's new version."""
        algo, want = checksum if checksum else (None, None)
        if algo is not None and algo not in CHECKSUMS:
            raise InvalidInput(f"unsupported checksum algorithm {algo!r} (sha1, sha256)")
        with self.drive.sm() as s:
            us = self._load(s, user_id, sid, kind)
            if us.state != UploadState.ACTIVE:
                raise OffsetMismatch(f"upload {sid} is complete", offset=us.offset)
            if offset != us.offset:
                raise OffsetMismatch(f"upload {sid} is at offset {us.offset}, not {offset}", offset=us.offset)
            meta = json.loads(us.meta)
            length = us.length or 0
        if part is not None:
            self._check_part(sid, meta.get("parts", []), part)
        tail = self.store.hot.read(meta["tail"]) if meta["tail"] else b""
        src = _Concat(tail, body, length - offset, algo)
        ing = Ingested()
        sink = self.store.writer(ing)
        whole = hashlib.sha256() if offset == 0 else None
        chunks: list[tuple[bytes, int]] = []
        pending: list[tuple[bytes, bytes]] = []

        def usable(block_ids: list[bytes]) -> set[bytes]:
            # Only blocks the caller already has (their files', their block session's, or
            # pinned by this upload) skip the write: see put_block.
            with self.drive.sm() as s:
                return self.usable(s, user_id, block_ids) | {r[0] for r in s.execute(
                    sa.select(UploadPin.block_id).where(UploadPin.session_id == sid,
                                                        UploadPin.block_id.in_(block_ids)))}

        def flush():
            sink.add_chunks(pending, usable)
            pending.clear()

        def take(raw: bytes):
            block_id = hashlib.sha256(raw).digest()
            chunks.append((block_id, len(raw)))
            pending.append((block_id, raw))
            if whole is not None:
                whole.update(raw)
            if len(pending) >= LOOKUP_BATCH:
                flush()

        held = None
        try:
            for view in self.store.chunker.chunks(src):
                if held is not None:
                    take(held)
                held = bytes(view)
            end = offset + src.received
            truncated = declared is not None and src.received < declared
            if src.digest is not None:
                if truncated or src.digest.digest() != want:
                    raise ChecksumMismatch(f"the chunk does not match its {algo} checksum", offset=offset)
            final = end == length
            if final and held is not None:
                take(held)
                held = None
            if pending:
                flush()
            new_tail = None
            if held:
                new_tail = f"uploads/{sid}/{end}.tail"
                self.store.hot.put(new_tail, held)
            sink.close()
        except BaseException:
            sink.abandon()
            raise
        crashpoints.reach("tus:chunk_stored")
        if whole is not None and final and meta["tail"] is None:
            meta["whole"] = whole.hexdigest()
        old_tail, meta["tail"] = meta["tail"], new_tail
        seq0 = meta["seq"]
        meta["seq"] = seq0 + len(chunks)
        if part is not None:
            _add_part(meta.setdefault("parts", []), part, src.received)
        chunk_off = end - (len(held) if held else 0) - sum(n for _, n in chunks)

        def run(s):
            res = s.execute(sa.update(UploadSession).where(UploadSession.id == sid, UploadSession.offset == offset,
                                                           UploadSession.state == UploadState.ACTIVE)
                            .values(offset=end, meta=json.dumps(meta)).execution_options(synchronize_session=False))
            if res.rowcount != 1:
                raise OffsetMismatch(f"upload {sid} moved on while this chunk arrived")
            self.store.commit(s, ing)  # ing.refs is empty: pins, not refs, keep these blocks
            self._pin(s, sid, {b for b, _ in chunks})
            rows, off = [], chunk_off
            for i, (bid, n) in enumerate(chunks):
                rows.append(dict(session_id=sid, seq=seq0 + i, block_id=bid, offset=off, size=n))
                off += n
            if rows:
                s.execute(sa.insert(UploadChunk), rows)
        self.drive.tx(run, attempts=1)
        crashpoints.reach("tus:chunk_committed")
        if old_tail and old_tail != new_tail:
            self._forget(old_tail)
        result = self.finish(user_id, sid) if final and kind == UploadKind.TUS else None
        return self.get(user_id, sid, kind), result

    @staticmethod
    def _check_part(sid: str, runs: list[list[int]], number: int) -> None:
        last = runs[-1][0] + runs[-1][1] - 1 if runs else None
        if last is not None and number <= last:
            raise Conflict(f"part {number} of upload {sid} comes after part {last}: parts are taken in "
                           "increasing order, once", last=last)
        if len(runs) >= MAX_PART_RUNS:
            raise InvalidInput(f"upload {sid} holds {MAX_PART_RUNS} runs of differently sized parts, its most; "
                               "send the rest in parts of one size")

    def _pin(self, s: Session, sid: str, ids: set[bytes]) -> list[bytes]:
        """Pin ``ids`` for the session; each must still exist. Pinning clears a GC mark in
        the same statement that finds the row, as taking a ref does: the sweep's guarded
        DELETE then leaves the block alone (a block marked dead that is uploaded again is
        kept, not refused until the sweep has removed it). Returns the ids newly pinned."""
        ids = list(ids)
        fresh: list[bytes] = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            alive = s.execute(sa.update(Block).where(Block.id.in_(part)).values(gc_marked_at=None)
                              .execution_options(synchronize_session=False)).rowcount
            if alive != len(part):
                raise RetryLater("a block was collected while this upload ran; resend the chunk")
            have = {r[0] for r in s.execute(sa.select(UploadPin.block_id).where(
                UploadPin.session_id == sid, UploadPin.block_id.in_(part)))}
            rows = [dict(session_id=sid, block_id=b) for b in part if b not in have]
            if rows:
                s.execute(sa.insert(UploadPin), rows)
            fresh += [r["block_id"] for r in rows]
        return fresh

    def _forget(self, key: str) -> None:
        try:
            self.store.hot.delete(key)
        except Exception:  # noqa: BLE001 - a leftover tail is harmless: expire() lists and removes them
            pass

    def finish(self, user_id: int, sid: str, kind: UploadKind = UploadKind.TUS, parent_id: int | None = None,
               name: str | None = None, if_match: int | str | None = None, sha256: bytes | None = None,
               mtime: dt.datetime | None = None) -> PutResult:
        """Turn a fully received session into the file's new version: of ``name`` in folder
        ``parent_id`` when given (a destination chosen at the end), else where the session
        was opened for. ``if_match`` is checked against the file there; with ``sha256`` the
        content must hash to it (ContentMismatch, and the session stays open); ``mtime`` is
        the file's modification time as the client knows it."""
        if name is not None:
            name = validate_name(name)
        with self.drive.sm() as s:
            us = self._load(s, user_id, sid, kind)
            if us.state == UploadState.DONE:
                raise Conflict(f"upload {sid} is already complete")
            if us.offset != us.length:
                raise InvalidInput(f"upload {sid} has {us.offset} of {us.length} bytes")
            meta = json.loads(us.meta)
            refs = [Ref(r.block_id, r.size) for r in s.execute(
                sa.select(UploadChunk).where(UploadChunk.session_id == sid).order_by(UploadChunk.seq)).scalars()]
            parent_id = us.parent_id if parent_id is None else parent_id
            name = us.name if name is None else name
            length = us.length
        sha = bytes.fromhex(meta["whole"]) if meta.get("whole") else self.hash_blocks([r.block_id for r in refs])
        if sha256 is not None and sha != sha256:
            raise ContentMismatch("the upload's content does not match its SHA-256 checksum")
        try:
            res = self._commit_version(user_id, parent_id, name, refs, length, sha, sid=sid, if_match=if_match,
                                       mtime=mtime)
        except QuotaExceeded:
            self.abort(sid)
            raise
        crashpoints.reach("tus:after_finish")
        return res

    def _commit_version(self, user_id: int, parent_id: int, name: str, refs: list[Ref], size: int, sha: bytes,
                        sid: str | None = None, if_match=None, release: Iterable[bytes] = (),
                        block_sid: str | None = None, mtime: dt.datetime | None = None) -> PutResult:
        """Commit the version an upload session (``sid``, a tus upload) or the block session
        ``block_sid`` (pins on ``release``) promised, giving back what the session held."""
        d = self.drive

        def run(s):
            parent, node, _owner = d.put_target(s, user_id, parent_id, name, if_match, False)
            created = node is None
            held = 0
            if sid is not None:
                held = s.execute(sa.select(UploadSession.reserved_bytes).where(UploadSession.id == sid)).scalar() or 0
            elif block_sid is not None:
                held = self.unpin(s, block_sid, release)
            # The reservation turns into the version it promised, in this transaction.
            node, vid = commit_version(s, d, user_id, NewVersion(parent, node, name, refs, size, sha, mtime), held=held)
            if sid is not None:
                s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid))
                s.execute(sa.delete(UploadChunk).where(UploadChunk.session_id == sid))
                # Only an active session: two requests finishing it at once make one version.
                if s.execute(sa.update(UploadSession).where(UploadSession.id == sid, UploadSession.state == UploadState.ACTIVE)
                             .values(state=UploadState.DONE, node_id=node.id, reserved_bytes=0)
                             .execution_options(synchronize_session=False)).rowcount != 1:
                    raise Conflict(f"upload {sid} is already complete")
            return PutResult(node_info(s, node, role_of(s, user_id, node)), vid, created, 0)
        return d.tx(run)

    def pinned_charge(self, s: Session, block_sid: str, ids: Iterable[bytes]) -> int:
        """The pending bytes the block session's pins on ``ids`` hold (what :meth:`unpin`
        would give back), read without changing anything."""
        rel = list(set(ids))
        held = 0
        for i in range(0, len(rel), 500):
            sizes = s.execute(sa.select(Block.size).join(UploadPin, UploadPin.block_id == Block.id)
                              .where(UploadPin.session_id == block_sid,
                                     UploadPin.block_id.in_(rel[i:i + 500]))).scalars().all()
            held += sum(quota.block_charge(n, self.floor) for n in sizes)
        return held

    def unpin(self, s: Session, block_sid: str, ids: Iterable[bytes]) -> int:
        """Release the block session's pins on ``ids`` (now kept by refs) and its hold on
        their pending bytes; returns those bytes, which the caller gives back to the user in
        the transaction that charges the version."""
        rel = list(set(ids))
        held = self.pinned_charge(s, block_sid, rel)
        for i in range(0, len(rel), 500):
            s.execute(sa.delete(UploadPin).where(UploadPin.session_id == block_sid,
                                                 UploadPin.block_id.in_(rel[i:i + 500])))
        if held:
            s.execute(sa.update(UploadSession).where(UploadSession.id == block_sid)
                      .values(reserved_bytes=sa.case((UploadSession.reserved_bytes > held,
                                                      UploadSession.reserved_bytes - held), else_=0))
                      .execution_options(synchronize_session=False))
        return held

    def _locations(self, ids: list[bytes]) -> dict[bytes, BlockLocation]:
        out = {}
        uniq = list(set(ids))
        with self.drive.sm() as s:
            for i in range(0, len(uniq), 500):
                for r in s.execute(sa.select(Block.id, Block.size, Block.stored_size, Pack.url, Block.offset_in_pack)
                                   .join(Pack, Pack.id == Block.pack_id).where(Block.id.in_(uniq[i:i + 500]))):
                    out[r[0]] = BlockLocation(*r)
        return out

    def stream_blocks(self, ids: list[bytes]) -> Iterator[bytes]:
        for i in range(0, len(ids), 256):
            part = ids[i:i + 256]
            locs = self._locations(part)
            missing = [b.hex() for b in part if b not in locs]
            if missing:
                raise InvalidInput(f"unknown block {missing[0]}", block=missing[0])
            yield from self.store.read_blocks([locs[b] for b in part])

    def hash_blocks(self, ids: list[bytes]) -> bytes:
        h = hashlib.sha256()
        for raw in self.stream_blocks(ids):
            h.update(raw)
        return h.digest()

    def abort(self, sid: str, state: str = "aborted", at: dt.datetime | None = None) -> None:
        """End an active session without a version: its pins, block list and tail are
        released. With ``state="expired"`` only a session still past its expiry at ``at``
        is ended: :meth:`expire` picks its ids first, and by now one may have completed
        (its pins already belong to a version) or been renewed (a block session)."""
        with self.drive.sm() as s, s.begin():
            us = s.get(UploadSession, sid, with_for_update=True)
            if us is None or us.state != UploadState.ACTIVE:
                return
            if state == "expired" and us.expires_at > (at or now()):
                return
            tail = json.loads(us.meta or "{}").get("tail")
            quota.release_session(s, sid)
            s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid))
            s.execute(sa.delete(UploadChunk).where(UploadChunk.session_id == sid))
            us.state = state
        if tail:
            self._forget(tail)

    def terminate(self, user_id: int, sid: str, kind: UploadKind = UploadKind.TUS) -> None:
        with self.drive.sm() as s:
            self._load(s, user_id, sid, kind)
        self.abort(sid)

    def expire(self, at: dt.datetime | None = None, limit: int = 100) -> int:
        """Expire unfinished sessions (tus and block sessions) past their ``expires_at``."""
        at = at or now()
        with self.drive.sm() as s:
            ids = s.execute(sa.select(UploadSession.id).where(UploadSession.state == UploadState.ACTIVE,
                                                              UploadSession.expires_at <= at).limit(limit)).scalars().all()
        for sid in ids:
            self.abort(sid, state=UploadState.EXPIRED, at=at)
        return len(ids)

    # ---- the block API ---------------------------------------------------------------

    def block_session(self, s: Session, user_id: int) -> UploadSession:
        sid = f"blocks-{user_id}"
        us = s.get(UploadSession, sid, with_for_update=True)
        t = now()
        if us is not None and us.state == UploadState.ACTIVE and us.expires_at <= t:
            # Past its expiry (idle, or its absolute lifetime over): what it pinned is no
            # longer promised to the client (the "missing" answer already stopped counting
            # it), so start over here rather than refuse every block until the gc job comes
            # by. expire() re-checks expires_at under the row lock, so it leaves the renewed
            # session alone.
            quota.release_session(s, sid)
            s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid))
            us.created_at, us.expires_at, us.reserved_bytes = t, self.block_expiry(t, t), 0
            s.flush()
        if us is None or us.state != UploadState.ACTIVE:
            if us is not None:
                quota.release_session(s, sid)
                s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid))
                s.delete(us)
                s.flush()
            us = UploadSession(id=sid, user_id=user_id, parent_id=0, name="", offset=0, length=None,
                               state=UploadState.ACTIVE, kind=UploadKind.BLOCKS, meta="{}", created_at=t,
                               expires_at=self.block_expiry(t, t), reserved_bytes=0)
            s.add(us)
            s.flush()
        return us

    def block_expiry(self, created: dt.datetime, t: dt.datetime) -> dt.datetime:
        """A block session lives while blocks keep coming, but never past its absolute
        lifetime: a client sending one block an hour cannot hold pins (and pending bytes) for
        ever."""
        return min(t + dt.timedelta(seconds=self.expire_seconds),
                   created + dt.timedelta(seconds=self.session_seconds))

    def _session_full(self):
        raise SessionLimit(f"a block session holds at most {self.max_session_blocks} uncommitted blocks; "
                           "commit the files sent so far, then send the rest", limit=self.max_session_blocks)

    def room_check(self, user_id: int, nbytes: int) -> None:
        """Refuse blocks that cannot fit before any byte is written to a pack (the charge
        itself is re-checked in the transaction that pins them)."""
        with self.drive.sm() as s:
            u = s.execute(sa.select(User.used_bytes, User.pending_bytes, User.quota_bytes)
                          .where(User.id == user_id)).one()
        if u.used_bytes + u.pending_bytes + nbytes > u.quota_bytes:
            self.drive.refuse(user_id, nbytes)

    def hold_blocks(self, s: Session, us: UploadSession, ids: set[bytes], sizes: dict[bytes, int]) -> None:
        """Pin ``ids`` in the block session ``us``, within its cap, and hold the pending
        bytes of the ones it did not pin yet."""
        fresh = self._pin(s, us.id, ids)
        if not fresh:
            return
        pinned = s.execute(sa.select(sa.func.count()).select_from(UploadPin)
                           .where(UploadPin.session_id == us.id)).scalar_one()
        if pinned > self.max_session_blocks:
            self._session_full()
        held = sum(quota.block_charge(sizes[b], self.floor) for b in fresh)
        quota.reserve(s, us.user_id, held, self.floor)
        us.reserved_bytes = (us.reserved_bytes or 0) + held

    @staticmethod
    def parse_hashes(hashes) -> list[bytes]:
        """SHA-256 hex digests as block ids; InvalidInput for anything else."""
        if not isinstance(hashes, list) or len(hashes) > MAX_HASHES:
            raise InvalidInput(f"hashes must be a list of at most {MAX_HASHES} SHA-256 hex digests")
        out = []
        for h in hashes:
            if not isinstance(h, str) or len(h) != 64:
                raise InvalidInput(f"not a SHA-256 hex digest: {str(h)[:80]!r}")
            try:
                out.append(bytes.fromhex(h))
            except ValueError:
                raise InvalidInput(f"not a SHA-256 hex digest: {h[:80]!r}") from None
        return out

    def usable(self, s: Session, user_id: int, ids: list[bytes]) -> set[bytes]:
        """Of ``ids``, those the caller may build on: refs of their own files' versions, or
        pinned in their live block session."""
        have: set[bytes] = set()
        sid = f"blocks-{user_id}"
        uniq = list(set(ids))
        for i in range(0, len(uniq), 500):
            part = uniq[i:i + 500]
            have.update(r[0] for r in s.execute(
                sa.select(VersionBlock.block_id).distinct()
                .join(FileVersion, FileVersion.id == VersionBlock.version_id)
                .join(Node, Node.id == FileVersion.node_id)
                .where(Node.owner_id == user_id, VersionBlock.block_id.in_(part))))
            have.update(r[0] for r in s.execute(
                sa.select(UploadPin.block_id).join(UploadSession, UploadSession.id == UploadPin.session_id)
                .where(UploadPin.session_id == sid, UploadSession.state == UploadState.ACTIVE,
                       UploadSession.expires_at > now(), UploadPin.block_id.in_(part))))
        return have

    def missing(self, user_id: int, hashes) -> list[str]:
        ids = self.parse_hashes(hashes)
        with self.drive.sm() as s:
            have = self.usable(s, user_id, ids)
        out, seen = [], set()
        for b in ids:
            if b not in have and b not in seen:
                seen.add(b)
                out.append(b.hex())
        return out

    def put_block(self, user_id: int, hex_id: str, data: bytes) -> bool:
        """Store one block sent by the caller, verified against its hash, and pin it in their
        block session. Returns True if the block was new *to the caller* (not among the blocks
        :meth:`missing` counts as theirs). Whether the server already had the bytes from
        someone else is never told: that answer would let anyone confirm that some user
        stores a given content."""
        (bid,) = self.parse_hashes([hex_id])
        if len(data) > self.store.chunker.max_size:
            raise InvalidInput(f"a block is at most {self.store.chunker.max_size} bytes")
        if hashlib.sha256(data).digest() != bid:
            raise ContentMismatch("the block's bytes do not hash to its name", block=hex_id)
        sid = f"blocks-{user_id}"
        with self.drive.sm() as s:
            resent = s.execute(sa.select(UploadPin.block_id).where(UploadPin.session_id == sid,
                                                                   UploadPin.block_id == bid)).first() is not None
            live = s.execute(sa.select(sa.func.count()).select_from(UploadPin)
                             .join(UploadSession, UploadSession.id == UploadPin.session_id)
                             .where(UploadPin.session_id == sid, UploadSession.state == UploadState.ACTIVE,
                                    UploadSession.expires_at > now())).scalar_one()
        if not resent:  # a block sent again (an answer lost) holds nothing more
            # Both bounds are checked again when the block is pinned; checking them here
            # first keeps a refused block out of the packs.
            if live >= self.max_session_blocks:
                self._session_full()
            self.room_check(user_id, quota.block_charge(len(data), self.floor))
        ing = Ingested()
        # Only a block the caller already has may skip the write. Any other is compressed,
        # appended and made durable even when the server holds it from someone else: a
        # shortcut there would answer faster and tell that someone stores this content. The
        # copy loses to the existing row at commit and is dead bytes that compact reclaims.
        with self.drive.sm() as s:
            owned = bool(self.usable(s, user_id, [bid]))
        sink = self.store.writer(ing)
        try:
            sink.add_chunks([(bid, data)], lambda block_ids: set(block_ids) if owned else set())
            sink.close()
        except BaseException:
            sink.abandon()
            raise
        if ing.new_blocks:
            crashpoints.reach("block:stored")

        def run(s):
            us = self.block_session(s, user_id)
            had = bid in self.usable(s, user_id, [bid])
            us.expires_at = self.block_expiry(us.created_at, now())
            self.store.commit(s, ing)
            self.hold_blocks(s, us, {bid}, {bid: len(data)})
            return not had
        return self.drive.tx(run)

    def commit_blocks(self, user_id: int, parent_id: int, name: str, hashes, size, sha256,
                      if_match=None) -> PutResult:
        """A new file or version of ``name`` made of the listed blocks, in order."""
        name = validate_name(name)
        ids = self.parse_hashes(hashes)
        if not isinstance(size, int) or size < 0:
            raise InvalidInput("size must be a whole number of bytes")
        try:
            sha = bytes.fromhex(sha256) if isinstance(sha256, str) and len(sha256) == 64 else None
        except ValueError:
            sha = None
        if sha is None:
            raise InvalidInput("sha256 must be the file's SHA-256 as 64 hex digits")
        with self.drive.sm() as s:
            self.drive.put_target(s, user_id, parent_id, name, if_match, False)
            have = self.usable(s, user_id, ids)
        lacking = [b.hex() for b in ids if b not in have]
        if lacking:
            raise InvalidInput(f"{len(lacking)} block(s) not sent yet", missing=len(lacking), first=lacking[0])
        locs = self._locations(ids)
        refs = [Ref(b, locs[b].size) for b in ids]
        total = sum(r.size for r in refs)
        if total != size:
            raise ContentMismatch(f"the blocks hold {total} bytes, not {size}")
        if self.hash_blocks(ids) != sha:
            raise ContentMismatch("the blocks' content does not hash to the given sha256")
        res = self._commit_version(user_id, parent_id, name, refs, size, sha, if_match=if_match,
                                   release=ids, block_sid=f"blocks-{user_id}")
        crashpoints.reach("block:after_commit")
        return res

    def chunking(self) -> dict:
        return chunking_params(self.drive.config["storage"])

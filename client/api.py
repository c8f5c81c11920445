"""The HTTP side of the client: one :class:`Api` per server and token, with timeouts,
retries with exponential backoff (connection failures, 429, 502/503/504, honouring
Retry-After) and problem+json errors turned into typed exceptions."""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from typing import Iterable, Iterator
from urllib.parse import quote

import requests

from storage.wire import FRAME, MAX_HASHES

MISSING_PER_CALL = MAX_HASHES
RETRY_STATUS = {429, 502, 503, 504}


class ClientError(Exception):
    """Anything the client reports to its user; ``exit_code`` is the CLI's exit status."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None, problem: dict | None = None):
        super().__init__(message)
        self.status, self.problem = status, problem or {}


class Unavailable(ClientError):
    """The server could not be reached (or kept failing) after every retry."""

    exit_code = 5


class AuthError(ClientError):
    exit_code = 6


class NotFoundError(ClientError):
    exit_code = 7


class ConflictError(ClientError):
    """The server's copy changed under us (ETag / If-Match mismatch): nothing was overwritten."""

    exit_code = 4


def _raise_for(resp: requests.Response, what: str) -> None:
    try:
        problem = resp.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") or problem.get("title") or resp.reason
    msg = f"{what}: {resp.status_code} {detail}"
    cls = {401: AuthError, 404: NotFoundError, 412: ConflictError}.get(resp.status_code, ClientError)
    if resp.status_code == 409 and str(problem.get("type", "")).endswith("/precondition-failed"):
        cls = ConflictError
    if cls is AuthError:
        msg += "; sign in again with `blockdrive login`"
    raise cls(msg, resp.status_code, problem)


def normalize_url(url: str) -> tuple[str, str | None]:
    """A server address as the client uses it, and a note for the user when it was changed:
    a bare host (``drive.example.com``) gets ``https://``; any scheme but http(s) is refused."""
    url = url.strip()
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if m is None:
        fixed = "https://" + url.lstrip("/")
        return fixed, f"{url!r} has no scheme: assuming {fixed}"
    if m[1].lower() not in ("http", "https"):
        raise ClientError(f"{url!r}: the server's address must start with https:// or http://")
    return url, None


def reason(exc) -> str:
    """Why a request failed, in a few words, without the HTTP library's internals."""
    if isinstance(exc, str) or exc is None:
        return str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (is the server plain http://?)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    seen = exc
    while seen is not None:  # the OS's own words: "Connection refused", "Name or service not known"
        for arg in (seen, *getattr(seen, "args", ())):
            if isinstance(arg, OSError) and arg.strerror:
                return arg.strerror
            m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(arg))
            if m:
                return m[1].strip()
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection dropped mid-answer"
    return "connection failed"


class Api:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 20.0, session: requests.Session | None = None):
        self.base = url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self.http = session or requests.Session()
        # Connection reuse across threads: one pool slot per worker thread we run.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        # who we are, for the local index (never the token itself)
        self.identity = self.base + "#" + hashlib.sha256((token or "").encode()).hexdigest()[:16]
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        self.http.headers["User-Agent"] = "blockdrive-client/0.1"
        self._chunking: dict | None = None
        self._local = threading.local()  # per thread: did the last request's connection drop?

    # ---- plumbing ------------------------------------------------------------------------

    def request(self, method: str, path: str, what: str | None = None, ok=(200, 201, 204, 206),
                body_factory=None, **kw) -> requests.Response:
        """Send, retrying what a retry can fix. ``body_factory`` rebuilds a streamed body for
        each attempt (a consumed generator cannot be resent)."""
        what = what or f"{method} {path}"
        kw.setdefault("timeout", self.timeout)
        last: Exception | str | None = None
        self._local.dropped = False
        for attempt in range(self.retries + 1):
            if body_factory is not None:
                kw["data"] = body_factory()
            try:
                resp = self.http.request(method, self.base + path, **kw)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = exc
                self._local.dropped = True
                self._sleep(attempt, None)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.retries:
                last = f"{resp.status_code} {resp.reason}"
                resp.close()
                self._sleep(attempt, resp.headers.get("Retry-After"))
                continue
            if resp.status_code not in ok:
                _raise_for(resp, what)
            return resp
        raise Unavailable(f"{what}: the server at {self.base} did not answer after {self.retries + 1} attempts "
                          f"({reason(last)})")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.retries:
            return
        delay = min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)
        if retry_after and retry_after.isdigit():
            delay = min(max(delay, int(retry_after)), self.max_backoff)
        time.sleep(delay)

    def json(self, method: str, path: str, **kw):
        return self.request(method, path, **kw).json()

    # ---- account and tree ------------------------------------------------------------------

    def login(self, email: str, password: str) -> str:
        return self.json("POST", "/api/v1/auth/tokens", json={"email": email, "password": password},
                         what="sign in")["token"]

    def tokens(self) -> list[dict]:
        return self.json("GET", "/api/v1/auth/tokens", what="list tokens")["items"]

    def revoke_token(self, token_id: int) -> None:
        self.request("DELETE", f"/api/v1/auth/tokens/{int(token_id)}", what=f"revoke token {token_id}")

    def logout(self) -> None:
        self.request("POST", "/api/v1/auth/logout", what="sign out")

    def account(self) -> dict:
        return self.json("GET", "/api/v1/account")

    def resolve(self, path: str) -> dict:
        return self.json("GET", "/api/v1/resolve", params={"path": path}, what=f"look up {path}")

    def node(self, node_id: int) -> dict:
        return self.json("GET", f"/api/v1/nodes/{node_id}")

    def children(self, node_id: int) -> Iterator[dict]:
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = self.json("GET", f"/api/v1/nodes/{node_id}/children", params=params)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # Requests that are not idempotent are retried like the others after a dropped connection,
    # but the retry may then be refused because the first attempt took effect and only its
    # answer was lost (a folder that now exists, a node already in the trash). Then the
    # outcome is checked, and found, it is the answer. (A move needs no check: moving a
    # node to where it already is succeeds.)

    def mkdir(self, parent_id: int, name: str) -> dict:
        try:
            return self.json("POST", f"/api/v1/nodes/{parent_id}/children", json={"name": name, "kind": "folder"})
        except ClientError as exc:
            if exc.status != 409 or not self._local.dropped:
                raise
            found = next((n for n in self.children(parent_id) if n["name"] == name and n["kind"] == "folder"), None)
            if found is None:
                raise
            return found

    def move(self, node_id: int, name: str | None = None, parent_id: int | None = None) -> dict:
        data = {k: v for k, v in (("name", name), ("parent_id", parent_id)) if v is not None}
        return self.json("PATCH", f"/api/v1/nodes/{node_id}", json=data)

    def delete(self, node_id: int) -> dict:
        try:
            return self.json("DELETE", f"/api/v1/nodes/{node_id}")
        except NotFoundError:
            # only the owner's trash can be looked at: an editor's delete stays a 404 here
            if not self._local.dropped:
                raise
            found = next((n for n in self.trash() if n["id"] == node_id), None)
            if found is None:
                raise
            return found

    def versions(self, node_id: int) -> list[dict]:
        return self.json("GET", f"/api/v1/nodes/{node_id}/versions")["items"]

    def restore_version(self, node_id: int, version_id: int) -> dict:
        return self.json("POST", f"/api/v1/nodes/{node_id}/versions/{version_id}/restore")

    def restore(self, node_id: int) -> dict:
        return self.json("POST", f"/api/v1/nodes/{node_id}/restore")

    def shared_with_me(self) -> list[dict]:
        return self.json("GET", "/api/v1/shared-with-me", what="list what is shared with you")["items"]

    def trash(self) -> list[dict]:
        return self.json("GET", "/api/v1/trash")["items"]

    def purge(self, node_id: int) -> dict:
        return self.json("DELETE", f"/api/v1/trash/{node_id}")

    def empty_trash(self) -> dict:
        """Purge the whole trash (the server purges a bounded number per request)."""
        total = {"purged": 0, "versions": 0}
        while True:
            res = self.json("DELETE", "/api/v1/trash")
            total["purged"] += res["purged"]
            total["versions"] += res["versions"]
            if not res.get("more") or not res["purged"]:
                return total

    def share(self, node_id: int, email: str, role: str) -> dict:
        return self.json("POST", f"/api/v1/nodes/{node_id}/shares", json={"email": email, "role": role})

    def link(self, node_id: int, expires_in: int | None = None, password: str | None = None) -> dict:
        data = {k: v for k, v in (("expires_in", expires_in), ("password", password)) if v is not None}
        return self.json("POST", f"/api/v1/nodes/{node_id}/links", json=data)

    # ---- change feed -----------------------------------------------------------------------

    def changes_latest(self) -> str:
        """A cursor at the end of the change feed, now."""
        return self.json("GET", "/api/v1/changes/latest", what="read the change feed")["cursor"]

    def changes(self, cursor: str, limit: int = 1000) -> dict:
        """``{entries, cursor, has_more}`` since ``cursor``; a 410 (``ClientError.status``) when
        the cursor expired: list the tree again."""
        return self.json("GET", "/api/v1/changes", params={"cursor": cursor, "limit": limit},
                         what="read the change feed")

    def changes_wait(self, cursor: str, timeout: int = 30) -> bool:
        """Whether something changed since ``cursor``, answered as soon as it does or after
        ``timeout`` seconds (a long-poll)."""
        return self.json("GET", "/api/v1/changes/wait", params={"cursor": cursor, "timeout": timeout},
                         timeout=timeout + 30, what="wait for changes")["changes"]

    # ---- blocks ----------------------------------------------------------------------------

    def chunking(self) -> dict:
        """The server's chunker settings, so we cut blocks exactly as it does."""
        if self._chunking is None:
            self._chunking = self.json("POST", "/api/v1/blocks/missing", json={"hashes": []})["chunking"]
        return self._chunking

    def missing(self, hashes: Iterable[str]) -> set[str]:
        uniq = list(dict.fromkeys(hashes))
        out: set[str] = set()
        for i in range(0, len(uniq), MISSING_PER_CALL):
            r = self.json("POST", "/api/v1/blocks/missing", json={"hashes": uniq[i:i + MISSING_PER_CALL]})
            out.update(r["missing"])
            self._chunking = r["chunking"]
        return out

    def missing_if_room(self, hashes: Iterable[str], files: list[dict]) -> set[str]:
        """:meth:`missing`, the first request also telling the server the files these blocks
        are for (``{size, blocks, parent_id}`` each, at most ``MISSING_PER_CALL``): if they
        cannot fit its quota, it answers 413 quota-exceeded (``needed``, ``available``)
        before a single block is sent."""
        uniq = list(dict.fromkeys(hashes))
        r = self.json("POST", "/api/v1/blocks/missing", json={"hashes": uniq[:MISSING_PER_CALL], "files": files},
                      what="check the room for the files")
        self._chunking = r["chunking"]
        return set(r["missing"]) | (self.missing(uniq[MISSING_PER_CALL:]) if len(uniq) > MISSING_PER_CALL else set())

    def put_blocks(self, blocks: list[tuple[str, bytes]]) -> dict:
        """Send ``(hex id, bytes)`` blocks in one request (retried whole: storing a block twice
        is harmless, the server deduplicates)."""
        def body():
            parts = []
            for h, raw in blocks:
                parts += (FRAME.pack(bytes.fromhex(h), len(raw)), raw)
            return b"".join(parts)  # one copy of the blocks, not two
        return self.json("POST", "/api/v1/batch/blocks", body_factory=body, what=f"send {len(blocks)} block(s)",
                         headers={"Content-Type": "application/octet-stream"})

    def commit(self, parent_id: int, name: str, blocks: list[str], size: int, sha256: str,
               if_match: str | None = None, if_none_match: bool = False) -> dict:
        """One file's new version from sent blocks. ``if_match`` is the ETag we last saw (412 ->
        :class:`ConflictError`); ``if_none_match`` asks that the file still not exist."""
        if if_none_match:
            # the single-file route has no If-None-Match: the batch route carries it
            (res,) = self.commit_many([{"parent_id": parent_id, "name": name, "blocks": blocks, "size": size,
                                        "sha256": sha256, "if_none_match": True}])
            if "error" in res:
                p = res["error"]
                cls = ConflictError if p.get("code") == "precondition-failed" else ClientError
                raise cls(f"commit {name}: {p.get('detail') or p.get('title')}", None, p)
            return {"id": res["ok"]["id"], "etag": res["ok"]["sha256"], **res["ok"]}
        headers = {"If-Match": f'"{if_match}"'} if if_match else {}
        return self.json("POST", f"/api/v1/nodes/{parent_id}/children/{quote_name(name)}/commit", headers=headers,
                         json={"blocks": blocks, "size": size, "sha256": sha256}, what=f"commit {name}")

    def commit_many(self, files: list[dict]) -> list[dict]:
        return self.json("POST", "/api/v1/batch/commit", json={"files": files},
                         what=f"commit {len(files)} file(s)")["results"]

    def folders(self, folders: list[dict]) -> list[dict]:
        return self.json("POST", "/api/v1/batch/folders", json={"folders": folders},
                         what=f"create {len(folders)} folder(s)")["results"]

    def tree(self, node_id: int) -> dict:
        return self.json("GET", f"/api/v1/nodes/{node_id}/tree")

    def block_map(self, node_id: int, version_id: int | None = None) -> dict:
        return self.json("GET", f"/api/v1/nodes/{node_id}/blocks",
                         params={"version": version_id} if version_id else None)

    def read_range(self, node_id: int, start: int, end: int, etag: str, version_id: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the file's version ``etag`` (of ``version_id``, else the
        current one). If the file changed since, the server answers 200 with the new content
        (If-Range): that is a conflict, not data."""
        last = None
        for attempt in range(self.retries + 1):
            r = self.request("GET", f"/api/v1/nodes/{node_id}/content", what=f"read bytes {start}-{end}",
                             headers={"Range": f"bytes={start}-{end - 1}", "If-Range": f'"{etag}"'}, stream=True,
                             params={"version": version_id} if version_id else None)
            with r:
                if r.status_code != 206:
                    now = r.headers.get("ETag", "?").strip('"')
                    raise ConflictError(f"the file changed on the server while downloading (had {etag}, now {now})")
                try:
                    data = r.content
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                    last = exc  # the connection dropped mid-body: ask again
                    self._sleep(attempt, None)
                    continue
            if len(data) == end - start:
                return data
            last = f"short read: {len(data)} of {end - start} bytes"
        raise Unavailable(f"read bytes {start}-{end}: the server at {self.base} did not answer after "
                          f"{self.retries + 1} attempts ({reason(last)})")

    def stream(self, node_id: int, version_id: int | None = None) -> requests.Response:
        return self.request("GET", f"/api/v1/nodes/{node_id}/content", stream=True,
                            params={"version": version_id} if version_id else None)


def quote_name(name: str) -> str:
    return quote(name, safe="")

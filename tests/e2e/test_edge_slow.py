"""Slow clients through the real server (gunicorn): two dozen connections sending their
headers or their bodies a byte a second do not stop the server from answering ``/healthz``
and authenticated requests, and each is closed once its deadline (set short here through the
``[server]`` keys) has passed, a body's with a 408 and nothing kept. 127.0.0.1 only; every
loop bounded."""

from __future__ import annotations

import errno
import json
import socket
import time
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.conftest import start_server, stop_server

DEADLINE = 3  # seconds: header_timeout_seconds and body_timeout_seconds of the server below


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    proc, srv = start_server(tmp, None, extra_env={
        "BLOCKDRIVE_SERVER_HEADER_TIMEOUT_SECONDS": str(DEADLINE),
        "BLOCKDRIVE_SERVER_BODY_TIMEOUT_SECONDS": str(DEADLINE),
        # a byte a second is far below this floor, so the body's deadline does not move
        "BLOCKDRIVE_SERVER_BODY_MIN_BYTES_PER_SECOND": "100"})
    yield srv
    stop_server(proc)


class Slow:
    """One connection that sends ``head`` a byte per tick, then ``body`` a byte per tick."""

    def __init__(self, server, kind: str, head: bytes, body_first: bytes = b""):
        u = urlparse(server.url)
        self.kind, self.rest, self.answer, self.closed = kind, head, b"", False
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        if body_first:  # the headers at once; the body then trickles
            self.sock.sendall(body_first)
        self.sock.setblocking(False)

    def tick(self) -> None:
        if self.closed:
            return
        try:
            while True:  # whatever the server said so far
                data = self.sock.recv(65536)
                if not data:
                    self.closed = True
                    return
                self.answer += data
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
            return
        if self.rest:
            try:
                self.sock.send(self.rest[:1])
                self.rest = self.rest[1:]
            except BlockingIOError:
                pass
            except OSError as exc:
                assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
                self.closed = True

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/1.1 ") else None


def test_slow_clients_do_not_take_the_server_down_and_are_cut_at_their_deadline(slow_server):
    srv = slow_server
    a = srv.user()
    host = urlparse(srv.url).netloc
    login = json.dumps({"email": "nobody@example.com", "password": "x" * 40}).encode()
    slow = []
    for i in range(8):  # headers a byte a second (unauthenticated)
        head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Pad: {'a' * 200}\r\n\r\n".encode()
        slow.append(Slow(srv, "headers", head))
    for i in range(8):  # an unauthenticated login body a byte a second
        head = (f"POST /api/v1/auth/tokens HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(login)}\r\n\r\n").encode()
        slow.append(Slow(srv, "body", login, body_first=head))
    for i in range(8):  # an authenticated upload a byte a second
        head = (f"PUT /api/v1/nodes/{a.root}/children/slow{i}.bin HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {a.token}\r\nContent-Length: 200\r\n\r\n").encode()
        slow.append(Slow(srv, "upload", b"u" * 200, body_first=head))

    served = []
    for t in range(60):  # bounded: every slow client is cut long before 60 ticks
        for s in slow:
            s.tick()
        if t in (1, 2):  # all 24 are open and trickling: the server still answers
            assert not any(s.closed for s in slow)
            served.append(requests.get(srv.url + "/healthz", timeout=15).status_code)
            served.append(a.get("/api/v1/account").status_code)
        if all(s.closed for s in slow):
            break
        time.sleep(1)
    assert served == [200, 200, 200, 200]
    assert all(s.closed for s in slow), [(s.kind, len(s.rest)) for s in slow if not s.closed]
    # cut before they had sent everything, and the ones cut mid-body were told so
    assert all(s.rest for s in slow)
    for s in slow:
        if s.kind == "headers":
            assert s.status in (None, 408), s.answer[:200]
        else:
            assert s.status == 408, (s.kind, s.answer[:300])
    for i in range(8):
        assert a.get("/api/v1/resolve", params={"path": f"/slow{i}.bin"}).status_code == 404
    assert requests.get(srv.url + "/healthz", timeout=15).status_code == 200

"""serve's DeadlineSocket on a socket pair: reads end (as end-of-stream, flagged timed_out) once
a request's header or body deadline has passed; a header timeout answers 408; fast bodies
and a caller's own shorter timeout are left alone."""

from __future__ import annotations

import socket
import time

import pytest

from webapi.serve import DeadlineSocket

LIMITS = {"header_timeout_seconds": 0.3, "body_timeout_seconds": 0.3, "body_min_bytes_per_second": 1000}


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(True)
    yield DeadlineSocket(a, LIMITS), b
    a.close()
    b.close()


def test_headers_past_their_deadline_end_the_stream_with_a_408(pair):
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert server.recv(100) == b"GET / HTTP/1.1\r\n"
    assert server.recv(100) == b""  # nothing more came before the deadline
    assert server.timed_out
    assert client.recv(100).startswith(b"HTTP/1.1 408 ")
    assert server.gettimeout() is None  # writes are not bounded by the read deadline


def test_a_body_trickling_below_the_rate_is_cut_and_a_new_request_starts_afresh(pair):
    server, client = pair
    server.begin_body()
    for _ in range(100):  # bounded: 20 bytes a second is cut about 0.3 s in
        client.sendall(b"x")
        if server.recv(10) == b"":
            break
        time.sleep(0.05)
    assert server.timed_out
    server.begin_request()
    client.sendall(b"GET /")
    assert server.recv(10).endswith(b"GET /") and not server.timed_out


def test_a_fast_body_is_not_cut(pair):
    server, client = pair
    server.begin_body()
    client.sendall(b"y" * 50_000)
    got = b""
    while len(got) < 50_000:
        data = server.recv(65536)
        assert data
        got += data
    assert not server.timed_out


def test_a_callers_shorter_timeout_still_raises(pair):
    server, client = pair
    server.begin_body()
    server.settimeout(0.05)
    with pytest.raises(socket.timeout):
        server.recv(10)
    assert not server.timed_out and server.gettimeout() == 0.05

"""/metrics through the real server: a made-up HTTP method is counted as "other" (no new
series), an operator can restrict the page to address ranges and/or a bearer token, and the
uploads' commits are counted by the transactions that carried them (group commit)."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import requests

from tests.e2e.conftest import start_server, stop_server


def raw_request(url: str, method: str, path: str) -> bytes:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        for _ in range(1000):
            data = s.recv(65536)
            if not data:
                break
            out += data
    return out


def test_made_up_methods_do_not_create_series(tmp_path):
    proc, srv = start_server(tmp_path, None)
    try:
        for i in range(5):
            assert raw_request(srv.url, f"BREW{i}", "/healthz").startswith(b"HTTP/1.1 405")
        text = requests.get(srv.url + "/metrics", timeout=30).text
        lines = [ln for ln in text.splitlines() if ln.startswith("blockdrive_http_requests_total{")]
        assert not any("BREW" in ln for ln in lines)
        other = [ln for ln in lines if 'method="other"' in ln and 'status="405"' in ln]
        assert sum(float(ln.rsplit(" ", 1)[1]) for ln in other) == 5
        assert any('method="GET"' in ln for ln in lines)
    finally:
        stop_server(proc)


def test_metrics_restricted_to_addresses(tmp_path):
    proc, srv = start_server(tmp_path, None, extra_env={"BLOCKDRIVE_METRICS_ALLOW_FROM": "10.0.0.0/8, 192.168.0.0/16"})
    try:
        r = requests.get(srv.url + "/metrics", timeout=30)
        assert r.status_code == 403 and r.headers["Content-Type"].startswith("application/problem+json")
        assert "blockdrive_http" not in r.text
        assert requests.get(srv.url + "/healthz", timeout=30).status_code == 200  # only /metrics is closed
    finally:
        stop_server(proc)


def test_metrics_restricted_to_a_bearer_token_and_an_address(tmp_path):
    token = "s3cret-metrics-token"
    proc, srv = start_server(tmp_path, None, extra_env={"BLOCKDRIVE_METRICS_ALLOW_FROM": "127.0.0.0/8",
                                                        "BLOCKDRIVE_METRICS_BEARER_TOKEN": token})
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                        {"Authorization": f"Bearer {token}x"}):
            r = requests.get(srv.url + "/metrics", headers=headers, timeout=30)
            assert r.status_code == 401, headers
            assert "blockdrive_http" not in r.text
        r = requests.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200 and "blockdrive_http_requests_total" in r.text
    finally:
        stop_server(proc)


def test_commits_are_counted_by_their_transactions(tmp_path):
    proc, srv = start_server(tmp_path, None, extra_env={"BLOCKDRIVE_STORAGE_GROUP_COMMIT": "true"})
    try:
        alice = srv.user()
        with ThreadPoolExecutor(12) as pool:
            for r in pool.map(lambda i: alice.upload(alice.root, f"f{i}.bin", b"x" * (100 + i)), range(36)):
                assert r.status_code == 201, r.text
        text = requests.get(srv.url + "/metrics", timeout=30).text

        def value(name: str) -> float:
            return sum(float(v) for v in re.findall(rf"^{name} ([0-9.e+]+)$", text, re.M))
        # every upload is in exactly one committed transaction, however they were grouped
        assert value("blockdrive_commit_group_size_sum") == 36
        assert 1 <= value("blockdrive_commit_group_size_count") <= 36
        assert value("blockdrive_commit_reruns_total") == 0
    finally:
        stop_server(proc)

"""Prometheus metrics at ``/metrics``.

Under gunicorn every worker is its own process, so counters use prometheus_client's
multiprocess mode: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
the workers start, each worker writes its samples there, and ``/metrics`` (answered by any
worker) sums them. Without that variable (tests, a single process) the default registry is
used.

``/metrics`` is open by default (as it always was); ``[metrics] allow_from`` (CIDR ranges)
and ``[metrics] bearer_token`` restrict it, each one that is set must pass. Production should
set one: the figures tell an outsider how busy the server is and which routes fail."""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("blockdrive_http_requests_total", "HTTP requests answered",
                   ["method", "endpoint", "status"])
LATENCY = Histogram("blockdrive_http_request_duration_seconds", "Time to the response's headers",
                    ["endpoint"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120))

# Where the reads that may use the database replica went (storage.db.ReplicaReads): target
# replica or primary, and why.
DB_READS = Counter("blockdrive_db_reads_total", "Read-only transactions by the database that served them",
                   ["target", "reason"])

# Commits of uploads (storage.groupcommit): how many shared each transaction, and how many ran
# again alone after their group (a lost race, or a group that did not commit).
COMMIT_GROUPS = Histogram("blockdrive_commit_group_size", "Uploads committed by one database transaction",
                          buckets=(1, 2, 4, 8, 16, 32, 64, 128))
COMMIT_RERUNS = Counter("blockdrive_commit_reruns_total", "Upload commits run again alone after their group")


# Every method a route of ours (or WebDAV) answers; anything else a client makes up is
# counted as "other", so made-up methods cannot grow the label set without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PROPPATCH",
                           "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def parse_networks(raw: str) -> list:
    """``[metrics] allow_from``: comma- or space-separated CIDR ranges (or single addresses)."""
    from storage.errors import ConfigError
    nets = []
    for part in raw.replace(",", " ").split():
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"metrics.allow_from: {part!r} is not an address range (CIDR)") from None
    return nets


def _refusal():
    """The problem answer when this request may not read /metrics, else None."""
    from .errors import problem
    nets = current_app.extensions["metrics_allow_from"]
    if nets:
        try:
            addr = ipaddress.ip_address((request.remote_addr or "").split("%", 1)[0])
        except ValueError:
            addr = None
        if addr is not None and addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr is None or not any(addr.version == n.version and addr in n for n in nets):
            return problem(403, "forbidden", "Forbidden", "metrics are not served to this address")
    token = current_app.config["BLOCKDRIVE"]["metrics"]["bearer_token"]
    if token:
        scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return problem(401, "unauthorized", "Unauthorized", "metrics need the metrics bearer token")
    return None


@bp.get("/metrics")
def metrics():
    refused = _refusal()
    if refused is not None:
        return refused
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def count_db_read(target: str, reason: str) -> None:
    DB_READS.labels(target, reason).inc()


def count_commit(what: str, n: int) -> None:
    if what == "group":
        COMMIT_GROUPS.observe(n)
    else:
        COMMIT_RERUNS.inc(n)


def instrument(app: Flask) -> None:
    app.extensions["metrics_allow_from"] = parse_networks(app.config["BLOCKDRIVE"]["metrics"]["allow_from"])
    listeners = app.extensions["drive"].replica_reads.listeners
    if count_db_read not in listeners:  # one drive may serve several apps (tests)
        listeners.append(count_db_read)
    commits = app.extensions["drive"].commits
    if commits is not None and count_commit not in commits.listeners:
        commits.listeners.append(count_commit)

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()

    @app.after_request
    def _count(resp):
        # the route's rule, not the URL: ids and tokens would make unbounded label sets
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(method_label(request.method), endpoint, str(resp.status_code)).inc()
        if "t0" in g:
            LATENCY.labels(endpoint).observe(time.perf_counter() - g.t0)
        return resp

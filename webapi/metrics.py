"""Prometheus metrics at ``/metrics``.

Under gunicorn every worker is its own process, so counters use prometheus_client's
multiprocess mode: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
the workers start, each worker writes its samples there, and ``/metrics`` (answered by any
worker) sums them. Without that variable (tests, a single process) the default registry is
used."""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

bp = Blueprint("metrics", __name__)

REQUESTS = Counter("blockdrive_http_requests_total", "HTTP requests answered",
                   ["method", "endpoint", "status"])
LATENCY = Histogram("blockdrive_http_request_duration_seconds", "Time to the response's headers",
                    ["endpoint"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120))


@bp.get("/metrics")
def metrics():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def instrument(app: Flask) -> None:
    @app.before_request
    def _start():
        g.t0 = time.perf_counter()

    @app.after_request
    def _count(resp):
        # the route's rule, not the URL: ids and tokens would make unbounded label sets
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(resp.status_code)).inc()
        if "t0" in g:
            LATENCY.labels(endpoint).observe(time.perf_counter() - g.t0)
        return resp

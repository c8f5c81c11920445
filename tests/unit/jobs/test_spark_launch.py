"""Spark's JVM is launched with nothing run between fork and exec (see jobs.spark)."""

import pyspark.java_gateway as gateway

from jobs.spark import _fork_safe_gateway


def test_gateway_launch_has_no_preexec_fn(monkeypatch):
    seen = {}

    def fake_popen(*args, **kwargs):
        seen.update(kwargs)
        return "proc"
    monkeypatch.setattr(gateway, "Popen", fake_popen)
    _fork_safe_gateway()
    assert gateway.Popen(["java"], preexec_fn=lambda: None, stdin=1) == "proc"
    assert "preexec_fn" not in seen and seen["start_new_session"] is True and seen["stdin"] == 1
    patched = gateway.Popen
    _fork_safe_gateway()  # idempotent: not wrapped twice
    assert gateway.Popen is patched

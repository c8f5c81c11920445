"""The thumbnail worker: real images come back small, as WebP; decompression bombs,
truncated images, non-images, oversized inputs and overrunning decodes come back as None;
the cache keeps both answers by content."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from webapi import thumbs
from webapi.thumbs import Limits, ThumbCache, render


def encoded(fmt: str, size=(1200, 800), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "orange").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"), ("WEBP", "RGB")])
def test_a_real_image_becomes_a_small_webp(fmt, mode):
    thumb = render(encoded(fmt, mode=mode))
    im = Image.open(io.BytesIO(thumb))
    assert im.format == "WEBP" and im.size == (256, 171)


def test_a_small_image_is_not_enlarged():
    assert Image.open(io.BytesIO(render(encoded("PNG", (40, 30))))).size == (40, 30)


def test_a_decompression_bomb_is_refused():
    bomb = encoded("PNG", (20_000, 20_000), mode="1")  # 400 MP in a few tens of KB
    assert len(bomb) < 100_000
    assert render(bomb, Limits(max_pixels=50_000_000)) is None
    # just over the pixel limit is refused as well, not only past Pillow's 2x error threshold
    assert render(encoded("PNG", (1000, 1001)), Limits(max_pixels=1_000_000)) is None
    assert render(encoded("PNG", (1000, 1000)), Limits(max_pixels=1_000_000)) is not None


def test_truncated_images_and_non_images_are_refused():
    assert render(encoded("PNG")[:300]) is None
    assert render(encoded("JPEG")[:200]) is None
    assert render(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>") is None
    assert render(b"%PDF-1.4 not an image") is None
    assert render(b"") is None


def test_other_formats_are_not_decoded():
    assert render(encoded("TIFF")) is None  # Pillow reads it; the worker accepts a short list only


def test_inputs_over_the_size_cap_never_reach_the_worker(monkeypatch):
    data = encoded("PNG")
    monkeypatch.setattr(thumbs.subprocess, "run", lambda *a, **k: pytest.fail("the worker ran"))
    assert render(data, Limits(max_bytes=len(data) - 1)) is None


def test_a_worker_out_of_memory_gives_no_thumbnail():
    assert render(encoded("PNG", (4000, 4000)), Limits(memory_bytes=64 * 1024**2)) is None


def test_a_worker_that_overruns_is_killed(monkeypatch):
    def timeout(*args, **kwargs):
        raise thumbs.subprocess.TimeoutExpired(args[0], kwargs["timeout"])
    monkeypatch.setattr(thumbs.subprocess, "run", timeout)
    assert render(encoded("PNG")) is None


def test_the_cache_keeps_thumbnails_and_failures_by_content(tmp_path):
    cache = ThumbCache(tmp_path)
    good, bad = encoded("PNG"), b"garbage"
    calls = []

    def reader(data):
        return lambda: calls.append(1) or data
    sha_good, sha_bad = hashlib.sha256(good).hexdigest(), hashlib.sha256(bad).hexdigest()
    first = thumbs.thumbnail(cache, sha_good, reader(good), Limits())
    assert first and thumbs.thumbnail(cache, sha_good, reader(good), Limits()) == first
    assert thumbs.thumbnail(cache, sha_bad, reader(bad), Limits()) is None
    assert thumbs.thumbnail(cache, sha_bad, reader(bad), Limits()) is None
    assert len(calls) == 2  # each content decoded once
    assert (tmp_path / sha_good[:2] / f"{sha_good}.webp").exists()
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


def test_when_every_worker_is_busy_nothing_runs_and_nothing_is_cached(tmp_path, monkeypatch):
    limits = Limits(workers=1, timeout_seconds=0.01)
    slot = thumbs.worker_slots(1)
    monkeypatch.setattr(thumbs.subprocess, "run", lambda *a, **k: pytest.fail("the worker ran"))
    cache, data = ThumbCache(tmp_path), encoded("PNG")
    sha = hashlib.sha256(data).hexdigest()
    assert slot.acquire(timeout=1)
    try:
        with pytest.raises(thumbs.Busy):
            thumbs.thumbnail(cache, sha, lambda: data, limits)
    finally:
        slot.release()
    assert cache.get(sha) is None  # not remembered as a failure: the next view tries again

"""Thumbnails of uploaded images, made by Pillow in a separate, fenced process.

An image decoder reads whatever a user uploads, so it never runs in the server's process:
:func:`render` starts a fresh Python (``python -I webapi/thumbs.py``: isolated, importing
nothing but Pillow), hands it the image's bytes on stdin and reads the thumbnail from its
stdout. The child sets its own limits before it decodes anything — address space
(``RLIMIT_AS``), CPU seconds (``RLIMIT_CPU``), no core files, ``Image.MAX_IMAGE_PIXELS`` —
and accepts only the common raster formats; the parent caps the input's size and kills the
child after a wall-clock timeout. Any failure (a decompression bomb, a truncated file, a
text file named ``.png``, a crash) means "no thumbnail": ``None``, never an exception.

Thumbnails are kept under ``<home>/thumbs/<owner id>`` by the content's sha256
(:class:`ThumbCache`), so each of an owner's images is decoded once; a failure is remembered
the same way. One cache per owner, not one for everybody: how fast a thumbnail comes back
would otherwise tell whether someone else has viewed the same picture (a dedup oracle).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")  # what the child agrees to decode
WEBP_MAGIC = (b"RIFF", b"WEBP")
MEDIA_TYPE = "image/webp"


class Busy(Exception):
    """Every worker slot stayed taken for the whole timeout: try again later (nothing is
    cached, unlike a failed decode)."""


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def worker_slots(workers: int) -> threading.BoundedSemaphore:
    """The process's semaphore for ``workers`` decoders at once: a folder of a thousand new
    photos must not start a thousand decoders."""
    with _slots_lock:
        return _slots.setdefault(workers, threading.BoundedSemaphore(workers))


@dataclass(frozen=True)
class Limits:
    """The fences around one decode (``web.thumb_*`` in the configuration)."""

    max_pixels: int = 50_000_000
    max_bytes: int = 30_000_000
    size: int = 256
    timeout_seconds: float = 10.0
    memory_bytes: int = 1024**3
    workers: int = 2

    @classmethod
    def of(cls, config) -> "Limits":
        w = config["web"]
        return cls(max_pixels=int(w["thumb_max_pixels"]), max_bytes=int(w["thumb_max_bytes"]),
                   size=min(int(w["thumb_size"]), 256), timeout_seconds=float(w["thumb_timeout_seconds"]),
                   memory_bytes=int(w["thumb_memory_bytes"]), workers=max(1, int(w["thumb_workers"])))


def render(data: bytes, limits: Limits = Limits()) -> bytes | None:
    """A WebP thumbnail (at most ``limits.size`` px a side) of the image in ``data``, or
    None if it is not a small enough image in an accepted format. Raises :class:`Busy` when
    ``limits.workers`` decoders stay busy for ``limits.timeout_seconds``."""
    if not data or len(data) > limits.max_bytes:
        return None
    slot = worker_slots(limits.workers)
    if not slot.acquire(timeout=limits.timeout_seconds):
        raise Busy(f"{limits.workers} thumbnail workers busy")
    try:
        return _run(data, limits)
    finally:
        slot.release()


def _run(data: bytes, limits: Limits) -> bytes | None:
    args = [sys.executable, "-I", str(Path(__file__).resolve()), str(limits.max_pixels), str(limits.size),
            str(limits.memory_bytes), str(max(1, int(limits.timeout_seconds)))]
    try:
        done = subprocess.run(args, input=data, capture_output=True, timeout=limits.timeout_seconds,
                              env={"PATH": os.environ.get("PATH", "")}, close_fds=True)
    except (subprocess.TimeoutExpired, OSError):
        return None  # run() has killed a child that overran
    out = done.stdout
    if done.returncode != 0 or out[:4] != WEBP_MAGIC[0] or out[8:12] != WEBP_MAGIC[1]:
        return None
    return out


class ThumbCache:
    """Thumbnails (and failures) by the sha256 of the image they were made from."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, sha256: str, suffix: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.folder / sha256[:2] / f"{sha256}{suffix}"

    def get(self, sha256: str) -> bytes | None | bool:
        """The thumbnail's bytes; False when making one failed before; None when never tried."""
        try:
            return self._path(sha256, ".webp").read_bytes()
        except FileNotFoundError:
            return False if self._path(sha256, ".none").exists() else None

    def put(self, sha256: str, thumb: bytes | None) -> None:
        """Keep ``thumb`` (None: remember the failure). Written to a temporary file and
        renamed, so a reader never sees half a thumbnail."""
        path = self._path(sha256, ".webp" if thumb is not None else ".none")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(thumb or b"")
        os.replace(tmp, path)


def thumbnail(cache: ThumbCache, sha256: str, read, limits: Limits) -> bytes | None:
    """The cached thumbnail of the content ``sha256``, made from ``read()`` (its bytes) on
    the first call; None if the content is no image we can make one of. :class:`Busy`
    (and ``read``'s own errors) propagate, and nothing is cached then."""
    found = cache.get(sha256)
    if found is not None:
        return found or None
    thumb = render(read(), limits)
    cache.put(sha256, thumb)
    return thumb


def _child(max_pixels: int, size: int, memory: int, cpu_seconds: int) -> int:
    """The worker: limits first, then decode stdin, then the thumbnail to stdout."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import warnings

    from PIL import Image
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refused
    data = sys.stdin.buffer.read()
    with Image.open(io.BytesIO(data), formats=FORMATS) as im:
        if im.width * im.height > max_pixels:
            return 3
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        im.thumbnail((size, size))
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        out = io.BytesIO()
        im.save(out, "WEBP", quality=80)
    sys.stdout.buffer.write(out.getvalue())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_child(*(int(a) for a in sys.argv[1:5])))
    except Exception as exc:  # noqa: BLE001  (any failure is "no thumbnail"; the parent reads the code)
        print(f"thumbnail failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)

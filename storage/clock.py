"""The one clock blockdrive reads. Naive UTC datetimes throughout (what both SQLite and MySQL
store); tests move time forward with :func:`advance` instead of sleeping."""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) + _offset


def advance(seconds: float) -> None:
    global _offset
    _offset += dt.timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)

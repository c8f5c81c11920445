"""Bounded batches: the maintenance and bookkeeping statements change at most ``BATCH`` rows
per transaction, so no lock is held long and no statement grows past the server's limits."""

from __future__ import annotations

from typing import Iterator, Sequence

BATCH = 500  # rows per bounded transaction


def batches(items: Sequence, n: int = BATCH) -> Iterator[Sequence]:
    """``items`` in consecutive slices of at most ``n``."""
    for i in range(0, len(items), n):
        yield items[i:i + n]

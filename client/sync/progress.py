"""Counting a transfer: :class:`Stats` for the report, :class:`Progress` for the bar on stderr."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Stats:
    files: int = 0
    bytes_total: int = 0        # bytes of the files considered
    bytes_sent: int = 0         # block bytes sent to the server
    bytes_skipped: int = 0      # block bytes the server already had (or the local copy had)
    bytes_received: int = 0     # block bytes fetched (pull)
    blocks_sent: int = 0
    blocks_skipped: int = 0
    requests: int = 0
    uploaded: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    created_folders: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    errors: list = field(default_factory=list)   # files the server refused for another reason
    skipped: list = field(default_factory=list)  # local files left out: {path, reason}
    kept: list = field(default_factory=list)     # server nodes absent here, not ours to remove: {path, reason}

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Progress:
    """Counts bytes sent vs skipped; draws a tqdm bar on stderr when asked."""

    def __init__(self, enabled: bool, desc: str = "push"):
        self.bar = None
        self.lock = threading.Lock()
        self.sent = self.skipped = 0
        if enabled:
            import sys

            from tqdm import tqdm
            self.bar = tqdm(total=0, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                            leave=False)

    def total(self, n: int) -> None:
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + n
            self.bar.refresh()

    def add(self, sent: int = 0, skipped: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.skipped += skipped
            if self.bar is not None:
                self.bar.update(sent + skipped)
                self.bar.set_postfix_str(f"sent {human_size(self.sent)}, skipped {human_size(self.skipped)}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


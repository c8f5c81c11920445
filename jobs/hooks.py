"""Named steps of the destructive jobs, where tests stop or kill a run.

Every job calls :func:`step` between the steps of its fixed safe order (``gc:after_mark``,
``compact:after_write``, ...). A step is a crash point of :mod:`storage.crashpoints`: tests
register a callable in :data:`HOOKS`, or set ``BLOCKDRIVE_CRASH_AT=<step>`` in a job
subprocess's environment to have it SIGKILLed right there, and then check that a restarted run
and fsck find every file intact.
"""

from __future__ import annotations

from storage.crashpoints import ENV as KILL_ENV
from storage.crashpoints import HOOKS, POINTS, reach

STEPS = {job: [p for p in POINTS if p.startswith(job + ":")] for job in ("gc", "compact", "tier")}

__all__ = ["HOOKS", "KILL_ENV", "STEPS", "step"]


def step(name: str) -> None:
    assert name in POINTS, name
    reach(name)

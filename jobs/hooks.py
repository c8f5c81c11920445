"""Named steps of the destructive jobs, where tests stop or kill a run.

Every job calls :func:`step` between the steps of its fixed safe order (``gc:after_mark``,
``compact:after_write``, ...). Tests register a callable in :data:`HOOKS`, or set
``BLOCKDRIVE_JOB_KILL_AT=<step>`` in a job subprocess's environment to have it SIGKILLed
right there, and then check that a restarted run and fsck find every file intact.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

HOOKS: dict[str, Callable[[], None]] = {}
KILL_ENV = "BLOCKDRIVE_JOB_KILL_AT"

STEPS = {
    "gc": ["gc:after_purge", "gc:after_expire", "gc:after_mark", "gc:after_sweep", "gc:after_abandon"],
    "compact": ["compact:after_delete", "compact:after_write", "compact:after_switch"],
    "tier": ["tier:after_delete", "tier:after_copy", "tier:after_switch"],
}


def step(name: str) -> None:
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    fn = HOOKS.get(name)
    if fn is not None:
        fn()

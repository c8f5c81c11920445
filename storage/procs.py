"""Processes on this host: whether the one that left a lease or a directory is still there."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host, whoever owns it. Pid 0 and
    below name no single process (``kill(0, sig)`` signals our own group), so they are
    never alive."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True

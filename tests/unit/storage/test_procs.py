"""Whether a process is still there: the check behind taking over a killed job's lease and
sweeping a killed server's metrics directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from storage.procs import pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    assert pid_alive(os.getpid())
    p = subprocess.Popen(["true"])
    p.wait()
    assert not pid_alive(p.pid)


def test_pid_zero_and_below_name_no_process():
    # kill(0, 0) and kill(-1, 0) succeed: they signal a group or everyone, not one process
    assert not pid_alive(0) and not pid_alive(-1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_another_users_process_is_alive_though_it_may_not_be_signalled():
    """A process of ``nobody``, seen from a process without CAP_KILL: kill(pid, 0) is refused
    with EPERM, and the process exists all the same. (No fork of this process: threads left
    by other tests could hold a lock the child would wait on forever.)"""
    other = subprocess.Popen(["sleep", "600"], user=65534, group=65534)
    try:
        code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from storage.procs import pid_alive\n"
                "pid = int(sys.argv[2])\n"
                "try:\n    os.kill(pid, 0); print('signalled')\nexcept PermissionError:\n    print('refused')\n"
                "print(pid_alive(pid))")
        out = subprocess.run(["setpriv", "--bounding-set=-kill", sys.executable, "-c", code, REPO, str(other.pid)],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
    finally:
        other.kill()
        other.wait()
    assert out == ["refused", "True"]
    assert not pid_alive(other.pid)

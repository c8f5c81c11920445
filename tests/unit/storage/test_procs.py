"""Whether a process is still there: the check behind taking over a killed job's lease and
sweeping a killed server's metrics directory."""

from __future__ import annotations

import os
import subprocess

import pytest

from storage.procs import pid_alive

def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    assert pid_alive(os.getpid())
    p = subprocess.Popen(["true"])
    p.wait()
    assert not pid_alive(p.pid)


def test_pid_zero_and_below_name_no_process():
    # kill(0, 0) and kill(-1, 0) succeed: they signal a group or everyone, not one process
    assert not pid_alive(0) and not pid_alive(-1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check as another user")
def test_another_users_process_is_alive_though_it_may_not_be_signalled():
    """As ``nobody``, kill(1, 0) is refused with EPERM: the process exists all the same."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the child becomes nobody, answers through the pipe, and exits
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.kill(1, 0)
                refused = False
            except PermissionError:
                refused = True
            os.write(w, f"{refused} {pid_alive(1)}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(child, 0)
    assert out == "True True"

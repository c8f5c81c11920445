"""Processes of the rehearsal: start one detached with its output in a log file, kill it the way a
crash does (SIGKILL) or stop it politely, and wait for ports and URLs to answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from harness.server import free_port

__all__ = ["Proc", "free_port", "port_open", "wait_until", "wait_port", "wait_http"]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Call ``check`` until it returns true; the seconds that took. Raises ``TimeoutError``
    naming ``what`` after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)


def wait_port(port: int, timeout: float = 60, what: str | None = None) -> float:
    return wait_until(lambda: port_open(port), timeout, what or f"port {port}")


def wait_http(url: str, timeout: float = 60, status: int = 200) -> float:
    """Wait until ``GET url`` answers ``status``; the seconds that took."""
    def ok() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == status
        except requests.RequestException:
            return False
    return wait_until(ok, timeout, url, interval=0.2)


class Proc:
    """One process of the cluster, in its own session (so a kill takes its children too), with
    stdout and stderr appended to ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict | None = None,
                 cwd: Path | None = None):
        self.name, self.argv, self.log = name, list(argv), Path(log)
        self.env, self.cwd = env, cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                          cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or a pulled plug would; waits for it."""
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout`` seconds."""
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        try:
            assert self.popen is not None
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 40) -> str:
        """The end of the log, for an error message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

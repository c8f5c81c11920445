"""A TCP proxy in front of a server that counts the bytes each way and can cut every connection
after a given number of bytes: how the client tests and benchmarks measure what went over the
wire, and simulate a server gone mid-transfer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def shut(*socks) -> None:
    """End both directions of a proxied connection (either side may be gone already)."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def relay(src: socket.socket, dst: socket.socket, admit: Callable[[bytes], bool]) -> None:
    """Copy what ``src`` sends to ``dst`` until either side closes or ``admit(data)`` refuses a
    piece (which is then not passed on); then end both connections."""
    try:
        while data := src.recv(65536):
            if not admit(data):
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        shut(src, dst)


class CountingProxy:
    """A TCP proxy counting bytes each way. ``cut_after(n)`` drops every connection once n
    more bytes went up and refuses new ones until ``heal()``: a server gone mid-push."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit("//", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.up = self.down = 0
        self.limit: int | None = None
        self.down_limit: int | None = None
        self.broken = False
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.up = self.down = 0

    def cut_after(self, n: int, down: bool = False):
        with self.lock:
            if down:
                self.down_limit = self.down + n
            else:
                self.limit = self.up + n

    def heal(self):
        with self.lock:
            self.limit = self.down_limit = None
            self.broken = False

    def _break(self):
        self.broken = True
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns.clear()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.broken:
                c.close()
                continue
            try:
                u = socket.create_connection(self.upstream)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, up):
        relay(src, dst, lambda data: self._admit(data, up))

    def _admit(self, data: bytes, up: bool) -> bool:
        """Count ``data``; False (drop it) once the connections are cut or this cuts them."""
        with self.lock:
            if self.broken:
                return False
            if up:
                self.up += len(data)
                over = self.limit is not None and self.up >= self.limit
            else:
                self.down += len(data)
                over = self.down_limit is not None and self.down >= self.down_limit
            if over:
                self._break()
            return not over

    def close(self):
        self.sock.close()

"""What the HTTP edge enforces below Flask, once for every route: a request body that ends
before its ``Content-Length`` is refused, never taken for the whole body.

gunicorn sets ``wsgi.input_terminated``, so Werkzeug trusts the stream to end where the body
ends and skips its own length check: a client that sends half its declared bytes and closes
its side (FIN) looked like a complete, shorter body, and a ``PUT`` stored it as the file's
new version. :class:`CheckedBody` counts what the application reads against the declared
length and raises :class:`BodyEndedEarly` (400) at the read that finds the stream ended, so
the exception unwinds the route before anything is committed or charged: every door (PUT,
tus, blocks, batch, JSON bodies) reads through it."""

from __future__ import annotations

import re

from werkzeug.exceptions import ClientDisconnected, RequestTimeout


class BodyEndedEarly(ClientDisconnected):
    """The connection ended (or failed) before the body's declared length arrived."""

    name = "Body Ended Early"  # the problem's title and type; still a 400

    def __init__(self, received: int, declared: int | None):
        self.received, self.declared = received, declared
        of = f" of the {declared} bytes its Content-Length announced" if declared is not None else ""
        super().__init__(f"the request body ended early: {received} byte(s) arrived{of}; nothing was kept "
                         "from this request except what a resumable upload reports in Upload-Offset")


class BodyTimedOut(RequestTimeout):
    """The client sent its body too slowly (see ``[server] body_timeout_seconds``)."""

    def __init__(self, received: int):
        self.received = received
        super().__init__(f"the request body arrived too slowly ({received} byte(s) received); "
                         "nothing was kept from this request")


READ_STEP = 256 * 1024  # most bytes one readinto asks the server's body reader for


class CheckedBody:
    """``wsgi.input``, counted: reading past its end before ``declared`` bytes arrived, or
    a read that fails (a reset, a chunked body cut mid-chunk), raises instead of returning
    what came. Reads never go past ``declared``."""

    def __init__(self, stream, declared: int | None, sock=None):
        self._stream, self.declared, self._sock = stream, declared, sock
        self.received = 0

    @property
    def remaining(self) -> int | None:
        return None if self.declared is None else self.declared - self.received

    def _fail(self, cause: BaseException | None = None):
        if getattr(self._sock, "timed_out", False):  # serve's read deadline cut the body
            raise BodyTimedOut(self.received) from cause
        raise BodyEndedEarly(self.received, self.declared) from cause

    def _read(self, method, size):
        if self.remaining == 0:
            return b""
        if self.remaining is not None and (size is None or size < 0 or size > self.remaining):
            size = self.remaining
        try:
            data = method(size) if size is not None and size >= 0 else method()
        except (ClientDisconnected, RequestTimeout):
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to read the client's bytes is the body's end
            self._fail(exc)
        self.received += len(data)
        if not data and size != 0 and self.remaining:
            self._fail()
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._read(self._stream.read, size)

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        # A bounded step: the server's body reader gathers a read in a buffer of its own and
        # copies it twice on the way out, so one read of a chunker's 8 MiB buffer would hold
        # three copies of it per upload. Short reads are fine here: the chunker fills its
        # buffer with as many reads as it takes.
        data = self.read(min(len(view), READ_STEP))
        view[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        return self._read(self._stream.readline, size)

    def readlines(self, hint=None):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


def declared_length(environ) -> int | None:
    """``CONTENT_LENGTH`` as a number, or None when absent or not plain ASCII digits (the
    server refused those already, or the body is chunked)."""
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    return int(raw) if _DIGITS.fullmatch(raw) else None


class BodyGuard:
    """WSGI middleware installing :class:`CheckedBody` as ``wsgi.input``."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = CheckedBody(stream, declared_length(environ), environ.get("gunicorn.socket"))
        return self.app(environ, start_response)

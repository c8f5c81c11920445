"""The request body check under every route (webapi.edge) and the edge's small parsers."""

from __future__ import annotations

import io

import pytest

from webapi.edge import READ_STEP, BodyEndedEarly, BodyTimedOut, CheckedBody, declared_length
from webapi.serve import sweep_metrics_dirs


class Failing(io.BytesIO):
    def read(self, n=-1):
        data = super().read(n)
        if not data:
            raise OSError("connection reset")
        return data


def test_a_body_shorter_than_its_length_raises_at_its_end():
    body = CheckedBody(io.BytesIO(b"x" * 10), 25)
    assert body.read(4) == b"xxxx" and body.read() == b"x" * 6
    with pytest.raises(BodyEndedEarly) as exc:
        body.read(5)
    assert exc.value.code == 400 and "10 byte(s) arrived of the 25" in exc.value.description


def test_a_whole_body_reads_to_its_length_and_never_past_it():
    body = CheckedBody(io.BytesIO(b"abcdefXYZ"), 6)
    assert body.read() == b"abcdef" and body.read(10) == b"" and body.received == 6
    assert list(CheckedBody(io.BytesIO(b"a\nb\nc"), 4)) == [b"a\n", b"b\n"]
    buf = bytearray(8)
    body = CheckedBody(io.BytesIO(b"abcdefXYZ"), 6)
    assert body.readinto(buf) == 6 and buf[:6] == b"abcdef"
    short = CheckedBody(io.BytesIO(b"ab"), 6)
    assert short.readinto(buf) == 2
    with pytest.raises(BodyEndedEarly):
        short.readinto(buf)


def test_readinto_asks_the_server_for_a_bounded_step_and_the_chunker_still_reads_it_all():
    from storage.chunking import FixedChunker
    asked = []

    class Recording(io.BytesIO):
        def read(self, n=-1):
            asked.append(n)
            return super().read(n)
    data = bytes(range(256)) * (3 * READ_STEP // 256 + 7)
    body = CheckedBody(Recording(data), len(data))
    assert b"".join(bytes(c) for c in FixedChunker(2 * READ_STEP + 5).chunks(body)) == data
    assert max(asked) == READ_STEP


def test_a_failing_read_and_a_timed_out_socket_are_the_body_ending():
    with pytest.raises(BodyEndedEarly):
        CheckedBody(Failing(b""), None).read(10)  # a chunked body cut mid-chunk

    class TimedOut:
        timed_out = True
    body = CheckedBody(io.BytesIO(b"ab"), 5, TimedOut())
    assert body.read(5) == b"ab"
    with pytest.raises(BodyTimedOut) as exc:  # serve's deadline ended the stream
        body.read(5)
    assert exc.value.code == 408


def test_content_length_is_ascii_digits():
    assert declared_length({"CONTENT_LENGTH": "12"}) == 12
    assert declared_length({"CONTENT_LENGTH": "\u00b2"}) is None
    assert declared_length({"CONTENT_LENGTH": "9" * 5000}) is None
    assert declared_length({}) is None


def test_metrics_dir_sweep_ignores_names_with_other_digits(tmp_path):
    (tmp_path / "blockdrive-metrics-\u00b2-x").mkdir()
    (tmp_path / "blockdrive-metrics-999999999-y").mkdir()
    assert sweep_metrics_dirs(str(tmp_path)) == ["blockdrive-metrics-999999999-y"]
    assert (tmp_path / "blockdrive-metrics-\u00b2-x").exists()

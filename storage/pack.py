"""The pack file format, version 1.

A pack holds many blocks. It is written once, front to back, and never changed after it is
closed. Every record describes itself, and the footer repeats the records' headers as an
index, so the block index can be rebuilt from the packs alone (footer first; a pack cut
short by a crash is scanned record by record instead).

All integers are little-endian.

    header   (24 bytes)
        magic      4  b"BDPK"
        version    1  1
        reserved   3  zero
        pack id   16  UUID bytes

    record   (48-byte header + payload), repeated
        block id  32  SHA-256 of the raw (uncompressed) block
        codec      1  0 = raw, 1 = zstd
        reserved   3  zero
        raw size   4
        stored     4  payload length
        crc32c     4  CRC32C of the payload (the stored bytes)
        payload   stored bytes

    footer index, one entry per record (56 bytes each)
        block id  32, codec 1, reserved 3, raw size 4, stored 4, crc32c 4, record offset 8

    trailer  (24 bytes, the last bytes of the file)
        entries    4
        index crc  4  CRC32C of the footer index bytes
        index off  8  offset of the footer index
        magic      4  b"BDPF"
        version    1  1
        reserved   3  zero

A block is read with one ranged read of ``RECORD_HEADER + stored`` bytes at its record
offset; the reader checks that the record header names the expected block and that the
payload's CRC32C matches, so neither a wrong offset nor flipped bits can return wrong bytes.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Iterator

import crc32c as _crc32c

from . import codec as codecs
from .errors import IntegrityError

MAGIC = b"BDPK"
FOOTER_MAGIC = b"BDPF"
VERSION = 1

_HEADER = struct.Struct("<4sB3x16s")
_RECORD = struct.Struct("<32sB3xIII")
_INDEX = struct.Struct("<32sB3xIIIQ")
_TRAILER = struct.Struct("<IIQ4sB3x")

HEADER_SIZE = _HEADER.size          # 24
RECORD_HEADER = _RECORD.size        # 48
INDEX_ENTRY = _INDEX.size           # 56
TRAILER_SIZE = _TRAILER.size        # 24


def crc32c(data) -> int:
    return _crc32c.crc32c(data)


@dataclass(frozen=True, slots=True)
class Record:
    block_id: bytes
    codec: int
    raw_size: int
    stored_size: int
    crc: int
    offset: int  # of the record header within the pack

    @property
    def end(self) -> int:
        return self.offset + RECORD_HEADER + self.stored_size


def encode_header(pack_id: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, pack_id)


def encode_record_header(block_id: bytes, codec: int, raw_size: int, payload) -> tuple[bytes, int]:
    crc = crc32c(payload)
    return _RECORD.pack(block_id, codec, raw_size, len(payload), crc), crc


def encode_footer(records: list[Record], index_offset: int) -> bytes:
    index = b"".join(_INDEX.pack(r.block_id, r.codec, r.raw_size, r.stored_size, r.crc, r.offset)
                     for r in records)
    return index + _TRAILER.pack(len(records), crc32c(index), index_offset, FOOTER_MAGIC, VERSION)


class PackWriter:
    """Append blocks to an open output stream; ``finish()`` writes the footer.

    The caller owns the stream: it closes it (which is what makes the pack durable) after
    ``finish()``.
    """

    def __init__(self, out, pack_id: bytes | None = None):
        self.pack_id = pack_id or uuid.uuid4().bytes
        self._out = out
        self.records: list[Record] = []
        self.size = 0
        self._write(encode_header(self.pack_id))

    def _write(self, data) -> None:
        self._out.write(data)
        self.size += len(data)

    def add(self, block_id: bytes, codec: int, raw_size: int, payload) -> Record:
        header, crc = encode_record_header(block_id, codec, raw_size, payload)
        rec = Record(block_id, codec, raw_size, len(payload), crc, self.size)
        self._write(header)
        self._write(payload)
        self.records.append(rec)
        return rec

    def add_stored(self, rec: Record, data) -> Record:
        """Append a record exactly as it is stored in another pack: ``data`` is its header
        and payload, already checked (``decode_record``) to hold ``rec``. A record's bytes
        do not depend on where it sits, so they are copied as they are, CRC included:
        nothing is decompressed, recompressed or hashed again."""
        new = Record(rec.block_id, rec.codec, rec.raw_size, rec.stored_size, rec.crc, self.size)
        self._write(data)
        self.records.append(new)
        return new

    def finish(self) -> None:
        self._write(encode_footer(self.records, self.size))


def decode_record(data, block_id: bytes, where: str) -> tuple[Record, memoryview]:
    """Check one record read from a pack and return it with its payload view."""
    if len(data) < RECORD_HEADER:
        raise IntegrityError(f"{where}: record truncated", where=where)
    bid, codec, raw_size, stored, crc = _RECORD.unpack_from(data, 0)
    if bid != block_id:
        raise IntegrityError(f"{where}: record holds block {bid.hex()}, expected {block_id.hex()}",
                             where=where, block=block_id.hex())
    payload = memoryview(data)[RECORD_HEADER:RECORD_HEADER + stored]
    if len(payload) != stored:
        raise IntegrityError(f"{where}: block {block_id.hex()} truncated", where=where, block=block_id.hex())
    if crc32c(payload) != crc:
        raise IntegrityError(f"{where}: block {block_id.hex()} fails its CRC32C check",
                             where=where, block=block_id.hex())
    return Record(bid, codec, raw_size, stored, crc, 0), payload


def decode_block(data, block_id: bytes, where: str) -> bytes:
    """Check a record and return the raw block bytes."""
    rec, payload = decode_record(data, block_id, where)
    try:
        raw = codecs.decode(rec.codec, payload, rec.raw_size)
    except Exception as exc:  # noqa: BLE001 - zstd errors, unknown codec: all mean the bytes are bad
        raise IntegrityError(f"{where}: block {block_id.hex()} does not decode: {exc}",
                             where=where, block=block_id.hex()) from None
    if len(raw) != rec.raw_size:
        raise IntegrityError(f"{where}: block {block_id.hex()} decodes to the wrong size",
                             where=where, block=block_id.hex())
    return raw


def read_trailer(tail: bytes) -> tuple[int, int, int] | None:
    """``(entries, index_crc, index_offset)`` from a pack's last bytes, or None if absent."""
    if len(tail) < TRAILER_SIZE:
        return None
    entries, icrc, ioff, magic, version = _TRAILER.unpack_from(tail, len(tail) - TRAILER_SIZE)
    if magic != FOOTER_MAGIC or version != VERSION:
        return None
    return entries, icrc, ioff


def parse_index(index: bytes, expected_crc: int, where: str) -> list[Record]:
    if crc32c(index) != expected_crc:
        raise IntegrityError(f"{where}: footer index fails its CRC32C check", where=where)
    return [Record(*_INDEX.unpack_from(index, i)) for i in range(0, len(index), INDEX_ENTRY)]


def parse_header(data: bytes, where: str) -> bytes:
    if len(data) < HEADER_SIZE:
        raise IntegrityError(f"{where}: not a pack (too short)", where=where)
    magic, version, pack_id = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise IntegrityError(f"{where}: not a pack (bad magic)", where=where)
    if version != VERSION:
        raise IntegrityError(f"{where}: pack version {version} is not supported", where=where)
    return pack_id


def scan_records(data: bytes, where: str) -> Iterator[Record]:
    """Walk the records of a pack without using its footer (a pack cut short by a crash).
    Stops at the first record that does not check out."""
    parse_header(data, where)
    pos = HEADER_SIZE
    while pos + RECORD_HEADER <= len(data):
        bid, codec, raw_size, stored, crc = _RECORD.unpack_from(data, pos)
        end = pos + RECORD_HEADER + stored
        if codec not in codecs.NAMES or end > len(data) or crc32c(data[pos + RECORD_HEADER:end]) != crc:
            return
        yield Record(bid, codec, raw_size, stored, crc, pos)
        pos = end

"""Code that runs on Spark executors: opening the pack store from the (pickled) config.

Executors never touch the metadata database; they read and write pack bytes (pyarrow file
systems behind storage's backends) and return what they did to the driver, which applies
it through storage/maintenance.py.
"""

from __future__ import annotations

_stores: dict = {}


def store_for(cfg):
    """A PackStore (pack I/O only, no database), cached per executor process."""
    from storage.backends import open_backend
    from storage.packstore import PackStore
    key = (cfg.storage_url, cfg.cold_url)
    store = _stores.get(key)
    if store is None:
        timeout = cfg["storage"]["timeout_seconds"]
        store = PackStore(open_backend(cfg.storage_url, timeout),
                          cold=open_backend(cfg.cold_url, timeout) if cfg.cold_url else None, timeout=timeout)
        _stores[key] = store
    return store


def read_records(store, url: str, verify: bool = False):
    """The records of the pack at ``url`` from its footer (scanned record by record if the
    footer is missing or damaged), as dicts; with ``verify``, each record is checked as a
    read checks it (block id, CRC32C, decoding to its raw size: ``ok`` and ``error``). Reads
    the whole pack once when verifying."""
    from storage import pack as packfmt
    from storage.errors import BlockdriveError
    backend, key = store.backend_for(url)
    size = backend.size(key)
    data = backend.read(key) if verify else None
    tail = data[-packfmt.TRAILER_SIZE:] if data is not None else \
        backend.read_range(key, max(0, size - packfmt.TRAILER_SIZE), packfmt.TRAILER_SIZE)
    records, footer_error = None, None
    trailer = packfmt.read_trailer(tail)
    if trailer is not None:
        entries, icrc, ioff = trailer
        index = data[ioff:ioff + entries * packfmt.INDEX_ENTRY] if data is not None else \
            backend.read_range(key, ioff, entries * packfmt.INDEX_ENTRY)
        try:
            records = packfmt.parse_index(index, icrc, key)
        except BlockdriveError as exc:
            footer_error = str(exc)
    else:
        footer_error = f"{key}: no footer"
    if records is None:
        data = data if data is not None else backend.read(key)
        records = list(packfmt.scan_records(data, key))
    out = []
    for r in records:
        row = {"block_id": r.block_id, "codec": r.codec, "raw_size": r.raw_size, "stored_size": r.stored_size,
               "offset": r.offset, "ok": True, "error": None}
        if verify:
            try:
                # Decoded as a read would: the CRC32C covers only the payload, so damage to the
                # header's codec or raw size shows only when the block is decoded.
                packfmt.decode_block(data[r.offset:r.end], r.block_id, f"{key} offset {r.offset}")
            except BlockdriveError as exc:
                row.update(ok=False, error=str(exc))
        out.append(row)
    return out, footer_error, size

"""Code that runs on Spark executors: opening the block store from the (pickled) config.

Executors never touch the metadata database; they read and write pack bytes (pyarrow file
systems behind storage's backends) and return what they did to the driver, which applies
it through storage/maintenance.py.
"""

from __future__ import annotations

_stores: dict = {}


def store_for(cfg):
    """A BlockStore for pack I/O only (no database), cached per executor process."""
    from storage.backends import open_backend
    from storage.blockstore import BlockStore
    key = (cfg.storage_url, cfg.cold_url)
    store = _stores.get(key)
    if store is None:
        timeout = cfg["storage"]["timeout_seconds"]
        store = BlockStore(None, open_backend(cfg.storage_url, timeout), None,
                           cold=open_backend(cfg.cold_url, timeout) if cfg.cold_url else None, timeout=timeout)
        _stores[key] = store
    return store

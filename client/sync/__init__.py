"""Push, pull and one-way sync over the block API.

- :mod:`.scan`      a local file's size, SHA-256 and blocks, cut as the server cuts them
- :mod:`.index`     the local cache of scans and of the last ETag synced per remote path
- :mod:`.plan`      pure decisions: the sync plan, blocks to send and their batches, ranges to read
- :mod:`.push`      send missing blocks, commit versions (also the uploader sync uses)
- :mod:`.pull`      fetch only the blocks the local copy lacks, replace it atomically
- :mod:`.mirror`    execute a sync plan in a safe order
- :mod:`.progress`  counters and the progress bar
- :mod:`.client`    :class:`Client`, which puts them together for one server

The local index (``$XDG_CACHE_HOME/blockdrive/index.sqlite``) maps a local path and its stat
(size, mtime, inode) to its hash and block list, so an unchanged file is not read again, and
remembers the last ETag synced per remote path. It is a cache: deleting it costs a rehash.
"""

from .client import Client
from .index import Index, default_index_path
from .plan import (PathPlan, RemoteEntry, SyncPlan, blocks_to_send, coalesce_ranges, group_batches, plan_paths,
                   plan_sync, split_remote)
from .progress import Progress, Stats, human_size
from .scan import ChangedWhileReading, FileScan, scan_file

__all__ = ["ChangedWhileReading", "Client", "FileScan", "Index", "PathPlan", "Progress", "RemoteEntry", "Stats",
           "SyncPlan", "blocks_to_send", "coalesce_ranges", "default_index_path", "group_batches", "human_size",
           "plan_paths", "plan_sync", "scan_file", "split_remote"]

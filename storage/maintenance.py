"""The jobs' facade onto the storage side of maintenance: every change a job makes goes
through one of the names re-exported here.

The jobs (``jobs/``) decide *what* to do from a snapshot of the metadata; the functions
behind these names *do* it, each in small transactions, and each re-checks its guard inside
the statement that changes the row, so a decision made on a stale snapshot can never remove
anything live. They live by concern:

- storage/leases.py: the scheduler's leases;
- storage/sweep.py: upload sessions expired, tails removed, blocks marked and swept;
- storage/packlife.py: packs registered, switched, retired, recovered and deleted;
- storage/packstore.py: records copied into a new pack, packs copied between tiers;
- storage/repair.py: counters recounted, refs moved to another copy of the same content;
- storage/retention.py: old versions thinned;
- storage/reads.py: last-read times of packs, for tiering.
"""

from __future__ import annotations

from .errors import NotFound
from .leases import acquire_lease, lease_holder, release_lease
from .packlife import (abandon_open_packs, delete_retired_packs, new_pack_id, recover_open_pack, refresh_live_bytes,
                       register_pack, retire_empty_packs, retire_packs, superseded_cutoff, switch_blocks,
                       switch_pack_location)
from .packstore import Move, Source, copy_pack, write_pack
from .reads import ReadTracker
from .repair import (Repair, Repoint, merge_version_refs, node_count_drift, repair_node_counts, repair_refcounts,
                     repair_usage, repoint_blocks)
from .retention import apply_retention
from .sweep import (SAFE, Safety, SweepResult, expire_upload_sessions, mark_blocks, remove_stale_tails,
                    sweep_blocks, sweep_cutoff)

__all__ = ["Safety", "SAFE", "acquire_lease", "release_lease", "lease_holder", "expire_upload_sessions",
           "remove_stale_tails", "mark_blocks", "sweep_cutoff", "sweep_blocks", "SweepResult", "register_pack",
           "switch_blocks", "Move", "retire_packs", "retire_empty_packs", "refresh_live_bytes", "abandon_open_packs",
           "recover_open_pack", "delete_retired_packs", "superseded_cutoff", "Source", "write_pack", "copy_pack", "switch_pack_location",
           "repair_refcounts", "repair_usage", "node_count_drift", "repair_node_counts", "apply_retention",
           "merge_version_refs", "Repoint", "repoint_blocks", "ReadTracker", "Repair", "new_pack_id", "NotFound"]

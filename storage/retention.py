"""Retention of old versions: each file's history thinned by the configured policy."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import quota
from .models import FileVersion, Node


def apply_retention(sm: sessionmaker[Session], policy: "quota.Retention", at: dt.datetime,
                    floor: int = quota.BLOCK_FLOOR, batch_nodes: int = 200, dry_run: bool = False) -> dict:
    """Thin every file's old versions by ``policy`` (:func:`storage.quota.plan_thinning`),
    ``batch_nodes`` files per transaction. Each transaction re-reads the versions and the
    current version under its own snapshot, so a file written meanwhile never loses the
    version that became current; refs, refcounts and the owner's used_bytes drop in the same
    transaction. Blocks are left to GC's mark and sweep."""
    stats = {"retention_files_checked": 0, "versions_thinned": 0, "version_bytes_freed": 0}
    last = 0
    while True:
        with sm() as s:
            nids = s.execute(sa.select(FileVersion.node_id).where(FileVersion.node_id > last)
                             .group_by(FileVersion.node_id).having(sa.func.count() > 1)
                             .order_by(FileVersion.node_id).limit(batch_nodes)).scalars().all()
        if not nids:
            return stats
        last = nids[-1]
        with sm() as s, s.begin():
            nodes = {n.id: (n.owner_id, n.current_version_id) for n in s.execute(
                sa.select(Node.id, Node.owner_id, Node.current_version_id).where(Node.id.in_(nids))
                .with_for_update())}
            by_node: dict[int, list] = {}
            for v in s.execute(sa.select(FileVersion.id, FileVersion.node_id, FileVersion.created_at,
                                         FileVersion.size, FileVersion.nblocks)
                               .where(FileVersion.node_id.in_(list(nodes)))):
                by_node.setdefault(v.node_id, []).append(v)
            drop: dict[int, list] = {}
            for nid, vs in by_node.items():
                owner, current = nodes[nid]
                gone = set(quota.plan_thinning([(v.id, v.created_at) for v in vs], current, at, policy))
                drop.setdefault(owner, []).extend((v.id, v.size, v.nblocks) for v in vs if v.id in gone)
            stats["retention_files_checked"] += len(by_node)
            for owner, versions in drop.items():
                stats["versions_thinned"] += len(versions)
                if dry_run:
                    stats["version_bytes_freed"] += sum(quota.version_charge(sz, n, floor) for _, sz, n in versions)
                else:
                    stats["version_bytes_freed"] += quota.drop_versions(s, owner, versions, floor)

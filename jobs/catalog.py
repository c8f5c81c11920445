"""The jobs blockdrive knows, by name, with what each does. Kept apart from the runner so the
CLI can list them without loading Spark, pyarrow or the maintenance code."""

#: The time zone of every cron schedule in ``[schedule]``.
TIMEZONE = "UTC"

JOBS = {
    "compact": "merge small packs, rewrite packs with many dead blocks, retire superseded packs",
    "dedup_scan": "find identical content stored more than once, merge references, report savings",
    "reconcile": "recompute refcounts and used bytes from the truth; repair and report drift",
    "gc": "purge expired trash, expire upload sessions, mark and sweep dead blocks",
    "tier": "copy cold packs to the cold tier, verify, switch, delete the hot copy after grace",
    "scrub": "verify pack records' CRC32C; report and repair from another copy",
    "rebuild_index": "rebuild the block index from pack footers into a fresh database (disaster recovery)",
    "report": "storage, dedup and compression ratios, tiers, garbage, traffic, job history; writes a snapshot",
}

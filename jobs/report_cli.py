"""``blockdrive report [--json] [--run]``: the latest report snapshot in the terminal, the same
object ``GET /api/v1/admin/reports/latest`` returns (storage/reports.py builds both).
``webapi/cli.py`` calls :func:`register_cli` to add it to its parser."""

from __future__ import annotations

import json
import sys

from .humanize import size

# (key, label, kind) of the headline rows, in the order the table shows them.
ROWS = [
    ("logical_bytes", "logical bytes (current versions)", "bytes"),
    ("logical_bytes_all_versions", "logical bytes (all versions)", "bytes"),
    ("trash_bytes", "  of which in the trash", "bytes"),
    ("unique_raw_bytes", "unique raw bytes (live blocks)", "bytes"),
    ("stored_bytes", "stored bytes (compressed)", "bytes"),
    ("dedup_ratio", "dedup ratio (logical / unique)", "ratio"),
    ("dedup_ratio_all_versions", "dedup ratio, all versions", "ratio"),
    ("compression_ratio", "compression ratio (unique / stored)", "ratio"),
    ("pack_bytes", "pack bytes (sealed, all tiers)", "bytes"),
    ("packs", "packs (sealed)", "n"),
    ("small_packs", "  small packs", "n"),
    ("garbage_bytes", "garbage pending", "bytes"),
    ("garbage_blocks", "  dead blocks", "n"),
    ("garbage_block_bytes", "  dead blocks' stored bytes", "bytes"),
    ("garbage_unindexed_bytes", "  unindexed bytes in packs", "bytes"),
    ("garbage_retiring_bytes", "  retiring packs' bytes", "bytes"),
    ("garbage_rewrite_ready_bytes", "  in packs past the dead ratio", "bytes"),
    ("users", "users", "n"),
    ("files", "files", "n"),
    ("unique_blocks", "unique blocks", "n"),
    ("uploads", "uploads (report window)", "n"),
    ("downloads", "downloads (report window)", "n"),
    ("bytes_in", "bytes in", "bytes"),
    ("bytes_out", "bytes out", "bytes"),
    ("job_runs", "job runs (report window)", "n"),
    ("job_runs_failed", "  not ok", "n"),
]


def render(snap: dict) -> str:
    h = snap["headline"]
    out = [f"report snapshot {snap['id']} taken {snap['taken_at']}", ""]
    for key, label, kind in ROWS:
        v = h.get(key)
        if v is None:
            shown = "-"
        elif kind == "bytes":
            shown = f"{size(v, digits=2):>12}  {v:>18,d} B"
        elif kind == "ratio":
            shown = f"{v:>12.4f}"
        else:
            shown = f"{v:>12,d}"
        out.append(f"{label:<38} {shown}")
    out += ["", f"{'tier':<8} {'packs':>8} {'pack bytes':>18} {'stored bytes':>18} {'retiring':>9} {'retiring bytes':>16}"]
    for t in snap["tiers"]:
        out.append(f"{t['tier']:<8} {t['packs']:>8,d} {t['pack_bytes']:>18,d} {t['stored_bytes']:>18,d} "
                   f"{t['retiring_packs']:>9,d} {t['retiring_bytes']:>16,d}")
    out += ["", f"{'#':>3} {'user':<32} {'files':>7} {'logical bytes':>16} {'all versions':>16} {'in trash':>14}"]
    for u in snap["top_users"]:
        out.append(f"{u['rank']:>3} {u['email'][:32]:<32} {u['files']:>7,d} {u['logical_bytes']:>16,d} "
                   f"{u['all_versions_bytes']:>16,d} {u['trash_bytes']:>14,d}")
    if snap["jobs"]:
        out += ["", f"{'run':>5} {'job':<14} {'status':<8} {'started':<21} {'seconds':>9} {'bytes freed':>14}"]
        for j in snap["jobs"][:15]:
            secs = f"{j['seconds']:.1f}" if j.get("seconds") is not None else "-"
            freed = f"{j['bytes_freed']:,d}" if j.get("bytes_freed") is not None else "-"
            out.append(f"{j['id']:>5} {j['job']:<14} {j['status']:<8} {j['started_at']:<21} {secs:>9} {freed:>14}")
    return "\n".join(out)


def cmd_report(args) -> int:
    from storage import reports
    from storage.states import JobStatus
    from .cli import open_drive
    drive = open_drive(args)
    if args.run:
        from .context import stderr_progress
        from .runner import JobBusy, run_job
        from .spark import get_spark, stop_spark
        try:
            res = run_job("report", drive, get_spark(drive.config), progress=stderr_progress("report"))
        except JobBusy as exc:
            print(f"blockdrive: {exc}", file=sys.stderr)
            return 1
        finally:
            stop_spark()
        if res.status != JobStatus.OK:
            return 1
    snap = reports.latest(drive.sm)
    if snap is None:
        print("blockdrive: no report yet: run `blockdrive report --run` or `blockdrive jobs run report`",
              file=sys.stderr)
        return 1
    print(json.dumps(snap) if args.json else render(snap))
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("report", help="storage, dedup and compression ratios, tiers, garbage, traffic (latest report)",
                       description="print the latest report snapshot (the same figures as /api/v1/admin/reports/latest)")
    p.add_argument("--json", action="store_true", help="the snapshot as JSON, exactly as the admin API returns it")
    p.add_argument("--run", action="store_true", help="run the report job first (PySpark)")
    p.set_defaults(fn=cmd_report)

"""What the admin dashboard shows: figures formatted for people, job runs labelled (a dry run
says so), and the eight charts built from the latest snapshot and the snapshots of the last
days. Pure: snapshot dicts (as :mod:`storage.reports` returns them) in, strings out.
"""

from __future__ import annotations

from typing import Sequence

from markupsafe import Markup

from .charts import COLORS, bar_chart, column_chart, line_chart

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def fmt_bytes(n) -> str:
    """``n`` bytes in the largest binary unit below it: "0 B", "1.50 KiB"; "–" for None."""
    if n is None:
        return "–"
    n = float(n)
    for unit in BYTE_UNITS[:-1]:
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} {BYTE_UNITS[-1]}"


def fmt_ratio(r) -> str:
    return "–" if r is None else f"{r:.2f}×"


def byte_unit(top: float) -> tuple[int, str]:
    """The largest binary unit (size, name) not above ``top``: the unit a byte axis reaching
    ``top`` is labelled in."""
    power = 0
    while power < len(BYTE_UNITS) - 1 and top >= 1024 ** (power + 1):
        power += 1
    return 1024**power, BYTE_UNITS[power]


def bytes_line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int | None]]],
                     min_top: float = 0) -> str:
    """A line chart of byte counts, its axis in one unit with round ticks (0, 2, 4 … MiB)."""
    size, name = byte_unit(max([min_top, *(v for _, vals in series for v in vals if v is not None)]))
    scaled = [(label, [None if v is None else v / size for v in vals]) for label, vals in series]
    return line_chart(title, labels, scaled, lambda v: f"{v:g} {name}", min_top=min_top / size)


def job_label(run: dict) -> str:
    """A job run's name, marked when it was a dry run (it changed nothing)."""
    return f"{run['job']} (dry run)" if run.get("dry_run") else run["job"]


def last_run_per_job(runs: list[dict]) -> list[dict]:
    """The newest run of each job, by job name; ``runs`` come newest first."""
    seen: dict[str, dict] = {}
    for r in runs:
        seen.setdefault(r["job"], r)
    return sorted(seen.values(), key=lambda r: r["job"])


def charts(snap: dict, series: list[dict]) -> dict[str, str]:
    """The dashboard's charts, by name: trends over ``series`` (oldest first) and the
    latest snapshot's tiers, top users, traffic and job run times."""
    labels = [s["taken_at"][5:16].replace("T", " ") for s in series]
    hs = [s["headline"] for s in series]
    tiers = snap["tiers"]
    traffic = snap["traffic"]
    return {
        "bytes": bytes_line_chart("Logical vs unique vs stored bytes", labels, [
            ("logical", [x["logical_bytes"] for x in hs]), ("unique raw", [x["unique_raw_bytes"] for x in hs]),
            ("stored", [x["stored_bytes"] for x in hs])]),
        "ratios": line_chart("Dedup and compression ratios", labels, [
            ("dedup", [x["dedup_ratio"] for x in hs]), ("compression", [x["compression_ratio"] for x in hs])],
            lambda v: f"{v:g}×"),
        "tiers": bar_chart("Pack bytes per tier", [(f"{t['tier']} ({t['packs']} packs)", t["pack_bytes"]) for t in tiers],
                           fmt_bytes, color=COLORS[2]),
        "tier_trend": bytes_line_chart("Pack bytes per tier over time", labels, [
            (name, [next((t["pack_bytes"] for t in s["tiers"] if t["tier"] == name), 0) for s in series])
            for name in sorted({t["tier"] for s in series for t in s["tiers"]})]),
        "users": bar_chart("Top users by logical bytes", [(u["email"], u["logical_bytes"]) for u in snap["top_users"][:10]],
                           fmt_bytes, color=COLORS[3]),
        "traffic": column_chart("Uploads and downloads per day", [d["day"][5:] for d in traffic], [
            ("uploads", [d["uploads"] for d in traffic]), ("downloads", [d["downloads"] for d in traffic])],
            lambda v: f"{v:.0f}", min_top=4, min_step=1),
        "jobs": bar_chart("Job run time, last run of each job (s)", [
            (job_label(j), float(j["seconds"] or 0)) for j in last_run_per_job(snap["jobs"])], lambda v: f"{v:.1f}s",
            color=COLORS[1]),
        "garbage": bytes_line_chart("Garbage pending", labels, [("garbage", [x["garbage_bytes"] for x in hs])],
                                    min_top=1024),
    }


def page_context(snap: dict | None, series: list[dict]) -> dict:
    """The names ``admin.html`` renders with, for the latest snapshot (None before the first
    report) and the trend ``series``."""
    return {"snap": snap, "h": snap["headline"] if snap else {},
            # Markup: the charts escape every text they draw, so Jinja must not escape them again.
            "charts": {k: Markup(v) for k, v in charts(snap, series).items()} if snap else {},
            "fmt_bytes": fmt_bytes, "fmt_ratio": fmt_ratio, "job_label": job_label}

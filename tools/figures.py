"""Figure tables in docs/, generated from the measurements' JSON instead of pasted by hand.

    python -m tools.figures [--collect]

Inputs live in ``docs/results/`` so the docs can be rebuilt from the repository alone (``var/``
and ``bench/results/`` are not committed):

=================================  ==========================================================
``docs/results/suite-<profile>.json``  ``python -m bench [--quick]`` (``make bench[-quick]``)
``docs/results/reliability-<mode>.json``  the reliability suite's summary (``make test`` /
                                       ``make soak``), ``var/reliability/<mode>-latest.json``
``docs/results/dav-<profile>.json``    ``python -m bench.dav [--quick]``, or the suite's ``dav``
                                       section
``docs/results/bisync-<profile>.json``  ``python -m bench.bisync [--quick]``, or the suite's
                                       ``bisync`` section
``docs/results/smallfiles-<profile>.json``  ``python -m bench.smallfiles [--quick]``, or the
                                       suite's ``smallfiles`` section
``docs/results/rehearsal-<profile>.json``  ``python -m rehearsal [--quick]`` (``make rehearsal``)
=================================  ==========================================================

``--collect`` first copies the latest of those files (and the bench chart) from where the runs
write them into ``docs/results/``. Each table goes between ``<!-- figures:NAME -->`` and
``<!-- /figures -->`` in the page that explains it: ``bench-<profile>`` in docs/performance.md,
``reliability-<mode>`` in docs/reliability.md, ``dav-<profile>`` in docs/webdav.md,
``bisync-<profile>`` and ``smallfiles-<profile>`` in docs/performance.md, ``rehearsal-<profile>``
in docs/scale.md. A page
without a region for an input is left alone; a region whose input is missing is an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bench.suite import Results
from tests.reliability.figures import COLUMNS
from tools import markers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
KIND = "figures"
PAGES = {"bench": ROOT / "docs" / "performance.md", "reliability": ROOT / "docs" / "reliability.md",
         "dav": ROOT / "docs" / "webdav.md", "rehearsal": ROOT / "docs" / "scale.md"}
HEADERS = {"runs": "runs", "kills": "kills", "faults": "faults injected", "detected": "detected",
           "lost": "lost"}


def number(x) -> str:
    """A figure for people: thousands separated, floats to a sensible precision."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1000:
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"


def _rows_table(data: dict, command: str, tools: str) -> str:
    """A bench run's rows as a Markdown table, under a line naming the run: ``command``, when,
    how many runs, the machine, the ``tools`` it measured against and the goals met."""
    res = Results()
    res.rows = data["rows"]
    res.by_key = {r["key"]: r for r in res.rows}
    met = sum(1 for r in res.rows for q in r.get("ratios", []) if q["met"])
    missed = sum(1 for r in res.rows for q in r.get("ratios", []) if q["met"] is False)
    params = data.get("params", {})
    head = (f"`{command}{' --quick' if data['profile'] == 'quick' else ''}` of {data['at']}, "
            f"medians of {params.get('repeat', '?')} runs, {data['seconds']} s in all; "
            f"{data['machine']}; {tools}; {met} goals met, {missed} missed:")
    return "\n".join([head, ""] + res.markdown())


def bench_table(data: dict) -> str:
    """The side-by-side table of a ``python -m bench`` run, with a line naming the run."""
    return _rows_table(data, "python -m bench", data["restic"])


def dav_table(data: dict) -> str:
    """The WebDAV table (``bench/dav.py``), with a line naming the run and how rclone copied."""
    return _rows_table(data, data["command"], f"WsgiDAV {data['wsgidav']}; {data['how']}")


def bisync_table(data: dict) -> str:
    """The table of a bench that names its command and how its peers ran (``bench/bisync.py``:
    how rclone bisync ran; ``bench/smallfiles.py``), with a line naming the run."""
    return _rows_table(data, data["command"], data["how"])


def reliability_table(data: dict) -> str:
    """One row per recorded test: the common columns, then every other figure it recorded."""
    out = [f"`{data['mode']}` variants of {data['at']} ({data['machine']}):", "",
           "| suite | " + " | ".join(HEADERS[c] for c in COLUMNS) + " | other |",
           "| --- |" + " --- |" * (len(COLUMNS) + 1)]
    for row in data["rows"]:
        cells = [number(row[c]) if c in row else "" for c in COLUMNS]
        other = ", ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in row.items()
                          if k not in COLUMNS and k != "suite")
        out.append(f"| {row['suite']} | " + " | ".join(cells) + f" | {other} |")
    return "\n".join(out)


def rehearsal_table(data: dict) -> str:
    """The rehearsal's figures (``python -m rehearsal``): per part whether its conditions held,
    what each kill cost the clients, and how long recovery took."""
    quick = " --quick" if data["profile"] == "quick" else ""
    verdict = "every pass condition held" if data["passed"] else "**a pass condition failed**"
    out = [f"`python -m rehearsal{quick}` of {data['started']}, {data['cores']} cores; {verdict}:", "",
           "| part | measure | figure |", "| --- | --- | --- |"]

    def row(part: str, what: str, value) -> None:
        out.append(f"| {part} | {what} | {'—' if value is None else number(value)} |")

    for name, part in data["parts"].items():
        row(name, "passed", ("yes" if part["ok"] else f"**no** {part.get('error', '')}".rstrip())
            + f", {number(part['seconds'])} s")
        for what, value in _rehearsal_rows(name, part):
            row(name, what, value)
    return "\n".join(out)


def _rehearsal_rows(name: str, part: dict) -> list[tuple[str, object]]:
    """The figures worth a row for one part of a rehearsal (missing ones are left out)."""
    g = part.get
    rows: list[tuple[str, object]] = []
    if name == "cluster":
        load, steps = g("load", {}), g("steps", {})
        rows += [("client requests ok / errors retried / left after retry",
                  f"{number(load.get('requests_ok'))} / {load.get('errors_before_retry')} / "
                  f"{load.get('errors_after_retry')}"),
                 ("acknowledged uploads read back: lost / different",
                  f"{g('verified', {}).get('lost')} / {g('verified', {}).get('different')} "
                  f"of {number(g('verified', {}).get('checked'))}")]
        for step, s in steps.items():
            rows.append((f"{step.replace('_', ' ')}: client errors retried / left",
                         f"{s.get('load_errors_before_retry')} / {s.get('load_errors_after_retry')}"))
        api, dn = steps.get("api_server_killed", {}), steps.get("datanode_killed", {})
        sp, sc = steps.get("spark_worker_killed", {}), steps.get("scheduler_killed", {})
        rows += [("API server killed → out of rotation, s", api.get("kill_to_out_of_rotation_s")),
                 ("DataNode restarted → fully replicated, s", dn.get("restart_to_fully_replicated_s")),
                 ("Spark worker killed mid-task", sp.get("outcome")),
                 ("leading scheduler killed → other leads, s (bound)",
                  f"{sc.get('takeover_s')} ({sc.get('takeover_bound_s')})"),
                 ("interrupted job's next run", (sc.get("next_run") or {}).get("status"))]
    elif name == "api":
        rows += [(f"small PUTs/s through HAProxy, {k.split('_')[1]} server(s)", v)
                 for k, v in g("small_puts_per_second", {}).items()]
        rows += [("killed → out of rotation, s", g("failover", {}).get("kill_to_down_s")),
                 ("client errors retried / left", f"{g('failover', {}).get('errors_before_retry')} / "
                                                  f"{g('failover', {}).get('errors_after_retry')}")]
    elif name == "spark":
        local = (g("local2") or {}).get("jobs", {})
        for job, run in (g("standalone") or {}).get("jobs", {}).items():
            rows.append((f"{job}, s: standalone / local[2]", f"{number(run['seconds'])} / "
                                                            f"{number(local[job]['seconds']) if job in local else '—'}"))
        rows.append(("worker killed mid-task", (g("worker_killed") or {}).get("outcome")))
    elif name == "hdfs":
        failed = sum(c.get("uploads_failed_after_retry", 0) for c in g("load", {}).values())
        rows += [("DataNode restarted → fully replicated, s", g("seconds_until_replicated")),
                 ("blocks under-replicated at the peak / after", f"{g('under_replicated_peak')} / "
                                                                  f"{g('under_replicated_after')}"),
                 ("uploads failed after retry", failed)]
    elif name == "schedulers":
        rows += [("leader killed → other leads, s (bound)", f"{g('takeover_s')} ({g('takeover_bound_s')})"),
                 ("interrupted run / next run", f"{(g('interrupted_run') or {}).get('status')} / "
                                                f"{(g('next_run') or {}).get('status')}")]
    elif name == "mariadb":
        rows += [("share of listings read on the replica", g("reads_replica_share")),
                 ("listing errors while the replica was dead", g("listing_errors_while_replica_down")),
                 ("replica restarted → caught up, s", g("catch_up_seconds"))]
    return [(w, v) for w, v in rows if v is not None]


def collect(bench_dir: Path = ROOT / "bench" / "results",
            reliability_dir: Path = ROOT / "var" / "reliability") -> list[Path]:
    """Copy the runs' latest JSON (and the quick bench chart) into ``docs/results/``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sorted(p for kind in ("suite", "dav", "bisync", "smallfiles", "rehearsal") for p in bench_dir.glob(f"{kind}-*.json")):
        copied.append(Path(shutil.copyfile(src, RESULTS / src.name)))
    for src in sorted(reliability_dir.glob("*-latest.json")):
        mode = src.name.removesuffix("-latest.json")
        copied.append(Path(shutil.copyfile(src, RESULTS / f"reliability-{mode}.json")))
    chart = bench_dir / "suite-quick.png"
    if chart.exists():
        copied.append(Path(shutil.copyfile(chart, ROOT / "docs" / "bench-quick.png")))
    return copied


def tables(results: Path = RESULTS) -> dict[str, dict[str, str]]:
    """Region bodies by page key, from every JSON input in ``results``."""
    out: dict[str, dict[str, str]] = {"bench": {}, "reliability": {}, "dav": {}, "rehearsal": {}}
    for path in sorted(results.glob("suite-*.json")):
        data = json.loads(path.read_text())
        out["bench"][f"bench-{data['profile']}"] = bench_table(data)
    for path in sorted(results.glob("reliability-*.json")):
        data = json.loads(path.read_text())
        out["reliability"][f"reliability-{data['mode']}"] = reliability_table(data)
    for path in sorted(results.glob("dav-*.json")):
        data = json.loads(path.read_text())
        out["dav"][f"dav-{data['profile']}"] = dav_table(data)
    for kind in ("bisync", "smallfiles"):  # both name their command and how their peers ran
        for path in sorted(results.glob(f"{kind}-*.json")):
            data = json.loads(path.read_text())
            out["bench"][f"{kind}-{data['profile']}"] = bisync_table(data)
    for path in sorted(results.glob("rehearsal-*.json")):
        data = json.loads(path.read_text())
        out["rehearsal"][f"rehearsal-{data['profile']}"] = rehearsal_table(data)
    return out


def render(page: Path, bodies: dict[str, str]) -> str:
    """The text of ``page`` with its figure regions filled from ``bodies``."""
    text = page.read_text()
    wanted = markers.names(text, KIND)
    absent = [n for n in wanted if n not in bodies]
    if absent:
        raise FileNotFoundError(f"{page.name}: no results for {', '.join(absent)} in {RESULTS}")
    return markers.replace(text, KIND, {n: b for n, b in bodies.items() if n in wanted})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--collect", action="store_true",
                    help="first copy the latest bench/results and var/reliability JSON into docs/results")
    args = ap.parse_args(argv)
    if args.collect:
        for path in collect():
            print(f"collected {path.relative_to(ROOT)}")
    bodies = tables()
    for key, page in PAGES.items():
        markers.save(page, render(page, bodies[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

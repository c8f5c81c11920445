"""The docs are made from the code and the committed results, and their links resolve."""

import json
import re
from pathlib import Path

import pytest

from tools import architecture, figures, markers

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SUITE = {
    "profile": "quick", "params": {"repeat": 3}, "machine": "2 cores (Test CPU)", "restic": "restic 9.9.9",
    "at": "2030-01-02 03:04:05", "seconds": 181,
    "rows": [
        {"key": "sha", "section": "ingest", "label": "SHA-256 in memory", "short": "SHA-256", "unit": "MB/s",
         "runs": [1111.0], "median": 1234.5, "higher_is_better": True},
        {"key": "put", "section": "ingest", "label": "blockdrive put", "short": "put", "unit": "MB/s",
         "runs": [987.0], "median": 987.0, "higher_is_better": True,
         "ratios": [{"ref": "sha", "ratio": 0.7995, "goal": 0.9, "what": "", "met": False}]},
    ],
}
RELIABILITY = {"mode": "quick", "at": "2030-01-02 03:04:05", "machine": "x86_64, 2 cores, Linux",
               "rows": [{"suite": "corruption local", "faults": 4321, "detected": 4321, "lost": 0,
                         "repaired": 17, "wrong_bytes_served": 0}]}
DAV = {
    "command": "python -m bench.dav", "profile": "quick", "machine": "2 cores (Test CPU)", "at": "2030-01-02 03:04:05",
    "seconds": 77, "how": "rclone v9.9: `rclone copy SRC :webdav:DEST --transfers 4`", "wsgidav": "9.8.7",
    "params": {"dav_files": 1000, "dav_mib": 128, "repeat": 3},
    "rows": [
        {"key": "dav_small_bd", "section": "webdav", "label": "1,000 files to blockdrive /dav/",
         "short": "blockdrive /dav/", "unit": "f/s", "runs": [250.0], "median": 250.0, "higher_is_better": True,
         "ratios": [{"ref": "dav_small_wsgidav", "ratio": 1.25, "goal": 1.0, "what": "", "met": True}]},
        {"key": "dav_small_wsgidav", "section": "webdav", "label": "1,000 files to WsgiDAV fs",
         "short": "WsgiDAV fs", "unit": "f/s", "runs": [200.0], "median": 200.0, "higher_is_better": True},
    ],
}
BISYNC = {
    "command": "python -m bench.bisync", "profile": "quick", "machine": "2 cores (Test CPU)",
    "at": "2030-01-02 03:04:05", "seconds": 99, "how": "rclone v9.9: `rclone bisync LOCAL bd:tree --checkers 8`",
    "params": {"files": 10000, "edits": 10, "repeat": 3},
    "rows": [
        {"key": "bisync_noop_bd", "section": "bisync", "label": "10,000 files: blockdrive bisync, nothing to do",
         "short": "blockdrive bisync", "unit": "s", "runs": [1.5], "median": 1.5, "higher_is_better": False,
         "ratios": [{"ref": "bisync_noop_bd", "ratio": 0.5, "goal": 1.0, "what": "of 3 s", "met": True}]},
    ],
}
PAGE = """# figures

Prose before.

<!-- figures:bench-quick -->
old table
<!-- /figures -->

Prose between.

<!-- figures:reliability-quick -->
<!-- /figures -->

Prose after.
"""


def _inputs(tmp_path: Path) -> Path:
    (tmp_path / "suite-quick.json").write_text(json.dumps(SUITE))
    (tmp_path / "reliability-quick.json").write_text(json.dumps(RELIABILITY))
    return tmp_path


def _fill(tmp_path: Path, text: str = PAGE) -> str:
    page = tmp_path / "page.md"
    page.write_text(text)
    bodies = figures.tables(_inputs(tmp_path))
    return figures.render(page, bodies["bench"] | bodies["reliability"])


def test_tables_hold_the_numbers_of_their_input(tmp_path):
    text = _fill(tmp_path)
    assert "| ingest | blockdrive put | 987 MB/s | 0.80× SHA-256 (goal ≥ 0.9: **missed** by 11%) |" in text
    assert "| ingest | SHA-256 in memory | 1,234 MB/s |" in text
    assert "restic 9.9.9" in text and "2030-01-02 03:04:05" in text and "0 goals met, 1 missed" in text
    assert "| corruption local |  |  | 4,321 | 4,321 | 0 | repaired 17, wrong bytes served 0 |" in text
    assert "old table" not in text


def test_the_webdav_table_names_its_run_and_holds_its_numbers(tmp_path):
    (tmp_path / "dav-quick.json").write_text(json.dumps(DAV))
    body = figures.tables(tmp_path)["dav"]["dav-quick"]
    head, _, table = body.partition("\n\n")
    assert head.startswith("`python -m bench.dav --quick` of 2030-01-02 03:04:05, medians of 3 runs, 77 s in all;")
    assert "WsgiDAV 9.8.7" in head and "--transfers 4" in head and "1 goals met, 0 missed" in head
    assert "| webdav | 1,000 files to blockdrive /dav/ | 250 f/s | 1.25× WsgiDAV fs (goal ≥ 1: met) |" in table


def test_the_bisync_table_goes_to_the_performance_page_and_names_its_run(tmp_path):
    (tmp_path / "bisync-quick.json").write_text(json.dumps(BISYNC))
    body = figures.tables(tmp_path)["bench"]["bisync-quick"]
    head, _, table = body.partition("\n\n")
    assert head.startswith("`python -m bench.bisync --quick` of 2030-01-02 03:04:05, medians of 3 runs, 99 s in all;")
    assert "rclone bisync LOCAL bd:tree" in head and "1 goals met, 0 missed" in head
    assert "| bisync | 10,000 files: blockdrive bisync, nothing to do | 1.50 s | 0.50× of 3 s (goal ≤ 1: met) |" in table


def test_the_small_files_table_goes_to_the_performance_page_and_names_its_run(tmp_path):
    data = {**BISYNC, "command": "python -m bench.smallfiles", "how": "16 aiohttp clients; rclone v9.9",
            "params": {"repeat": 1, "sf_files": 2000},
            "rows": [{"key": "sf_bd", "section": "smallfiles", "label": "2,000 files of 4 KiB: HTTP PUT, 16 clients",
                      "short": "blockdrive PUT", "unit": "f/s", "runs": [56.3], "median": 56.3, "higher_is_better": True,
                      "ratios": [{"ref": "sf_bd", "ratio": 0.0375, "goal": 1.0, "what": "of 1500 f/s", "met": False}]}]}
    (tmp_path / "smallfiles-quick.json").write_text(json.dumps(data))
    body = figures.tables(tmp_path)["bench"]["smallfiles-quick"]
    head, _, table = body.partition("\n\n")
    assert head.startswith("`python -m bench.smallfiles --quick` of 2030-01-02 03:04:05, medians of 1 runs, 99 s in all;")
    assert "16 aiohttp clients" in head and "0 goals met, 1 missed" in head
    assert ("| smallfiles | 2,000 files of 4 KiB: HTTP PUT, 16 clients | 56.30 f/s | "
            "0.04× of 1500 f/s (goal ≥ 1: **missed** by 96%) |") in table


def test_markers_and_prose_are_kept_and_a_second_run_changes_nothing(tmp_path):
    text = _fill(tmp_path)
    assert markers.names(text, "figures") == ["bench-quick", "reliability-quick"]
    for prose in ("Prose before.", "Prose between.", "Prose after."):
        assert prose in text
    assert _fill(tmp_path, text) == text


def test_a_region_without_its_input_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench-full"):
        _fill(tmp_path, PAGE + "<!-- figures:bench-full -->\n<!-- /figures -->\n")


def test_a_body_without_its_region_is_an_error():
    with pytest.raises(KeyError, match="nowhere"):
        markers.replace(PAGE, "figures", {"nowhere": "x"})


@pytest.mark.parametrize("key", sorted(figures.PAGES))
def test_figure_pages_are_what_the_committed_results_make(key):
    page = figures.PAGES[key]
    assert figures.render(page, figures.tables()[key]) == page.read_text(), \
        "the figures are out of date: run `make docs` (python -m tools.figures)"


def test_the_import_graph_is_read_from_the_code(tmp_path):
    for path, text in {"storage/__init__.py": "", "storage/a.py": "from storage import b\n",
                       "storage/b.py": "def f():\n    from .models import user\n",
                       "storage/models/__init__.py": "", "storage/models/user.py": "from ..a import x\n",
                       "webapi/__init__.py": "import storage.a\nfrom storage.b import f\nimport flask\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    nodes, edges = architecture.graph(tmp_path)
    assert nodes == {"storage", "storage.a", "storage.b", "storage.models", "webapi"}
    assert edges == {("storage.a", "storage.b"), ("storage.b", "storage.models"),
                     ("storage.models", "storage.a"), ("webapi", "storage.a"), ("webapi", "storage.b")}
    assert "webapi -->|2| storage" in architecture.package_graph(edges)


def test_architecture_page_is_what_the_code_makes():
    assert architecture.render() == architecture.PAGE.read_text(), \
        "the module graphs are out of date: run `make docs` (python -m tools.architecture)"


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")
              and not (page.parent / t.split("#")[0]).exists()]
    assert broken == []

"""storage/ is the library: it must import nothing of the layers above it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"flask", "werkzeug", "pyspark", "apscheduler", "webapi", "jobs", "gunicorn"}


def imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def test_storage_imports_nothing_above_it():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for p in (ROOT / "storage").rglob("*.py")
           for mod, line in imports(p) if mod in FORBIDDEN]
    assert bad == []


def test_the_checker_sees_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import flask\nfrom pyspark.sql import DataFrame\nfrom . import y\n")
    assert [m for m, _ in imports(f)] == ["flask", "pyspark"]

"""The client stands alone: it imports the standard library, requests, tqdm, pyfastcdc, watchdog and the
dependency-free modules of storage — never Flask, SQLAlchemy, pyarrow, webapi or jobs."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
THIRD_PARTY = {"requests", "tqdm", "pyfastcdc", "watchdog"}
# storage's modules the client may use, and storage/__init__.py, which every one of them runs
STORAGE = {"storage", "storage.chunking", "storage.wire", "storage.logs", "storage.errors", "storage.names"}


def imported(path: Path, package: str) -> set[str]:
    """Absolute names of the modules ``path`` (in ``package``) imports, relative ones resolved."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            # ``from storage import x`` imports the module storage.x
            out.update(f"{mod}.{a.name}" if mod == "storage" else mod for a in node.names)
    return out


def allowed(mod: str) -> bool:
    top = mod.split(".")[0]
    return top in sys.stdlib_module_names or top in THIRD_PARTY or top == "client" or mod in STORAGE


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name != "__init__" else rel.parts
    return ".".join(parts)


def test_the_client_imports_only_what_its_extra_installs():
    files = list((ROOT / "client").rglob("*.py")) + [ROOT / "storage" / (m.split(".")[-1] + ".py")
                                                     for m in STORAGE if m != "storage"]
    files.append(ROOT / "storage" / "__init__.py")
    bad = sorted(f"{p.relative_to(ROOT)} imports {m}" for p in files for m in imported(p, package_of(p))
                 if not allowed(m))
    assert bad == []


def test_the_checker_sees_forbidden_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import flask\nfrom storage import db, wire\nfrom ..api import Api\nfrom storage.drive import Drive\n")
    names = imported(f, "client.sync")
    assert names == {"flask", "storage.db", "storage.wire", "client.api", "storage.drive"}
    assert [m for m in sorted(names) if not allowed(m)] == ["flask", "storage.db", "storage.drive"]

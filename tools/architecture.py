"""The module graph in docs/architecture.md, read from the code's imports.

    python -m tools.architecture

Walks every ``import`` in the packages below (including imports inside functions), keeps the ones
between our own modules, and writes Mermaid graphs between ``<!-- graph:NAME -->`` and
``<!-- /graph -->``: ``packages`` (one node per package, edges counted in module pairs) and one
graph per package (its modules, and the modules of other packages they import). Sub-packages that
are one concern (``storage/models/``, ``storage/backends/``) are drawn as one node; migrations
are left out. A module that a large share of a package imports would bury the picture in arrows,
so it is drawn with no arrows into it and named under the graph instead.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

from tools import markers

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
KIND = "graph"
PACKAGES = ("storage", "webapi", "client", "jobs", "bench")
COLLAPSE = ("storage.models", "storage.backends", "webapi.admin", "client.sync")
SKIP = ("storage.migrations",)
# a module imported by at least this share of a package's modules is "used everywhere"
COMMON_SHARE = 0.3


def module_name(path: Path, root: Path = ROOT) -> str:
    """``storage/drive.py`` -> ``storage.drive``; ``storage/__init__.py`` -> ``storage``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node(name: str) -> str | None:
    """The node a module is drawn as: collapsed sub-packages become one, skipped ones None."""
    if any(name == s or name.startswith(s + ".") for s in SKIP):
        return None
    for c in COLLAPSE:
        if name == c or name.startswith(c + "."):
            return c
    return name


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of our packages by dotted name."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir() else []:
            out[module_name(path, root)] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that the module ``name`` at ``path`` imports, resolved to the most specific
    known module (``from storage import drive`` is ``storage.drive``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = package.split(".")
                up = up[:len(up) - (n.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in n.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
                break
    return found


def graph(root: Path = ROOT) -> tuple[set[str], set[tuple[str, str]]]:
    """The drawn nodes, and the (importer, imported) edges between them without self-loops."""
    mods = modules(root)
    nodes = {n for n in map(node, mods) if n}
    edges = set()
    for name, path in mods.items():
        src = node(name)
        for target in imported(path, name, set(mods)):
            dst = node(target)
            if src and dst and src != dst:
                edges.add((src, dst))
    return nodes, edges


def _id(name: str) -> str:
    return name.replace(".", "_")


def _label(name: str) -> str:
    pkg, _, rest = name.partition(".")
    return (rest or f"{pkg} (package)") + ("/*" if name in COLLAPSE else "")


def _package(name: str) -> str:
    return name.split(".")[0]


def package_graph(all_edges: set[tuple[str, str]]) -> str:
    """One node per package; an edge says how many module pairs import across it."""
    counts = Counter((_package(a), _package(b)) for a, b in all_edges if _package(a) != _package(b))
    present = sorted({_package(x) for e in all_edges for x in e}, key=PACKAGES.index)
    lines = ["```mermaid", "graph LR"]
    lines += [f'  {p}["{p}/"]' for p in present]
    lines += [f"  {a} -->|{n}| {b}" for (a, b), n in sorted(counts.items())]
    return "\n".join(lines + ["```"])


def common_modules(pkg: str, nodes: set[str], all_edges: set[tuple[str, str]]) -> list[str]:
    """Modules imported by at least COMMON_SHARE of ``pkg``'s modules (and by three or more)."""
    own = sum(1 for m in nodes if _package(m) == pkg)
    fan_in = Counter(b for a, b in all_edges if _package(a) == pkg)
    return sorted(m for m, n in fan_in.items() if n >= 3 and n >= COMMON_SHARE * own)


def module_graph(pkg: str, nodes: set[str], all_edges: set[tuple[str, str]]) -> str:
    """``pkg``'s modules (of ``nodes``) and what they import, grouped by package, with the
    common modules drawn once and listed below the graph."""
    common = set(common_modules(pkg, nodes, all_edges))
    mine = sorted({(a, b) for a, b in all_edges if _package(a) == pkg and b not in common})
    own = {m for m in nodes if _package(m) == pkg}
    used = {b for _, b in mine} | common
    groups: dict[str, list[str]] = {p: [] for p in PACKAGES}
    for m in sorted(own | used):
        groups[_package(m)].append(m)
    lines = ["```mermaid", "graph LR"]
    for p in [pkg] + [p for p in PACKAGES if p != pkg]:
        if groups[p]:
            lines.append(f'  subgraph {p}_pkg ["{p}/"]')
            lines += [f'    {_id(m)}["{_label(m)}"]' for m in groups[p]]
            lines.append("  end")
    lines += [f"  {_id(a)} --> {_id(b)}" for a, b in mine]
    lines.append("```")
    if common:
        lines += ["", f"Imported by {COMMON_SHARE:.0%} or more of the modules of `{pkg}/`, so drawn without arrows: "
                  + ", ".join(f"`{m}`" for m in sorted(common)) + "."]
    return "\n".join(lines)


def graphs(root: Path = ROOT) -> dict[str, str]:
    """Region bodies by name: ``packages`` and one per package (a sentence if it is absent)."""
    nodes, all_edges = graph(root)
    out = {"packages": package_graph(all_edges)}
    for pkg in PACKAGES:
        present = (root / pkg).is_dir()
        out[pkg] = module_graph(pkg, nodes, all_edges) if present else f"No `{pkg}/` package in this tree."
    return out


def render(page: Path = PAGE, root: Path = ROOT) -> str:
    """The text of ``page`` with every graph region it has filled from the code under ``root``."""
    text = page.read_text()
    bodies = graphs(root)
    return markers.replace(text, KIND, {n: b for n, b in bodies.items() if n in markers.names(text, KIND)})


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m tools.architecture", description=__doc__.splitlines()[0]).parse_args(argv)
    markers.save(PAGE, render())
    return 0


if __name__ == "__main__":
    sys.exit(main())

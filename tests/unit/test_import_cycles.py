"""No two modules of storage/ import each other, directly or round a longer loop: each layer
of the library builds on the ones below it. Imports made only for type checking
(``if TYPE_CHECKING:``) are left out; an import inside a function counts like any other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def storage_imports(path: Path, package: str) -> set[str]:
    """The modules of ``storage`` that the module at ``path`` (in ``package``) imports."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "storage")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == "storage":
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else base)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(ast.parse(path.read_text(), str(path)))
    return out


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for p in (ROOT / "storage").rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            package = ".".join(parts)
        else:
            package = ".".join(parts[:-1])
        graph[".".join(parts)] = storage_imports(p, package)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def walk(mod: str, stack: list[str]) -> None:
        state[mod] = "open"
        stack.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep in graph and dep not in state:
                walk(dep, stack)
        stack.pop()
        state[mod] = "done"
    for mod in sorted(graph):
        if mod not in state:
            walk(mod, [])
    return found


def test_storage_has_no_import_cycle():
    assert cycles(module_graph()) == []


def test_the_checker_sees_a_cycle_and_skips_type_checking_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from typing import TYPE_CHECKING\nfrom . import blockstore\nfrom .packstore import tier_of\n"
                 "if TYPE_CHECKING:\n    from .drive import Drive\n"
                 "def f():\n    from .maintenance import ReadTracker\n")
    assert storage_imports(f, "storage") == {"storage.blockstore", "storage.packstore", "storage.maintenance"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []

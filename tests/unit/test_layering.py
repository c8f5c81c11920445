"""The layering rules, checked on the source with ``ast`` (nothing is imported):

- storage/ is the library: it imports nothing of the layers above it;
- no import cycle among the modules of storage/, and none between the top-level packages;
- no module uses another module's private names (``from m import _x``, ``m._x``, ``obj._x``);
- the user's client imports none of the server's dependencies;
- bench/ imports nothing of tests/ (both use harness/);
- jobs/ and webapi/ reach storage only through public names.

Each rule has a test that its checker sees a violation written into a temporary file."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"flask", "werkzeug", "pyspark", "apscheduler", "webapi", "jobs", "gunicorn"}
# The top-level packages whose dependencies on each other must form no cycle.
PACKAGES = ["storage", "jobs", "webapi", "client", "harness", "bench", "rehearsal"]
# What the user's client must not import: it installs on a laptop without the server.
CLIENT_FORBIDDEN = {"flask", "werkzeug", "sqlalchemy", "pyarrow", "pyspark", "webapi", "jobs", "gunicorn"}
# Names spelled with a leading underscore that are documented public API, not another module's
# private names: namedtuple's and SQLAlchemy Row's methods, os._exit, sys._getframe.
PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_field_defaults", "_make", "_mapping", "_t", "_tuple",
                     "_exit", "_getframe"}

# Known violations, which must shrink to empty: never add to them. An entry goes when what it
# names is fixed, and the tests below fail until it does (a stale entry fails too).
#
# Import cycles among storage's modules, each a sorted strongly connected component.
KNOWN_CYCLES: list[list[str]] = []
# Uses of another module's private names, as "file:name": each goes when the name becomes public
# (named, documented) or its use moves into the module that owns it.
ALLOWLIST: set[str] = set()


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


# ---- the module graph ------------------------------------------------------------------------

def module_name(path: Path, root: Path) -> str:
    """``storage/backends/local.py`` -> ``storage.backends.local``; a package's ``__init__.py``
    is the package itself."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path, *packages: str) -> Iterator[Path]:
    for pkg in packages:
        yield from sorted((root / pkg).rglob("*.py"))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``: an import made only for
    annotations is never executed, so it cannot close a cycle."""
    todo = deque([tree])
    while todo:
        node = todo.popleft()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path, root: Path, known: set[str]) -> Iterator[tuple[str, str, int]]:
    """Every import in ``path`` (at module level or inside a function) as ``(module, name,
    line)``, relative imports resolved: ``from . import x`` is module ``pkg.x`` when that is a
    module of ``known``, otherwise name ``x`` of ``pkg``; ``import a.b`` is module ``a.b``."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                if sub in known:
                    yield sub, "", node.lineno
                else:
                    yield module, a.name, node.lineno


def module_graph(root: Path, *packages: str) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (itself excluded)."""
    files = {module_name(p, root): p for p in sources(root, *packages)}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = {m for m, _, _ in imported_modules(path, root, known) if m in known and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted: every
    import cycle lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """Top-level package -> the other top-level packages of ``packages`` its modules import."""
    present = [p for p in packages if (root / p).is_dir()]
    graph: dict[str, set[str]] = {p: set() for p in present}
    for pkg in present:
        for path in sources(root, pkg):
            for module, _, _ in imported_modules(path, root, set()):
                top = module.split(".")[0]
                if top in graph and top != pkg:
                    graph[pkg].add(top)
    return graph


def test_no_import_cycle_among_the_modules_of_storage():
    found = cycles(module_graph(ROOT, "storage"))
    assert [c for c in found if c not in KNOWN_CYCLES] == [], "break the cycle: move the shared part down"
    assert [c for c in KNOWN_CYCLES if c not in found] == [], "fixed: remove these from KNOWN_CYCLES"


def test_no_import_cycle_between_the_top_level_packages():
    assert cycles(package_graph(ROOT, PACKAGES)) == []


def test_the_checker_sees_a_cycle(tmp_path):
    pkg = tmp_path / "storage"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "c.py").write_text("from storage.a import x\n")
    (pkg / "d.py").write_text("from . import a\n")
    assert cycles(module_graph(tmp_path, "storage")) == [["storage.a", "storage.b", "storage.c"]]


def test_the_checker_sees_a_cycle_between_packages(tmp_path):
    for pkg, text in [("storage", "import jobs.gc\n"), ("jobs", "from storage import Drive\n"),
                      ("webapi", "import storage\n")]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(text)
    assert cycles(package_graph(tmp_path, PACKAGES)) == [["jobs", "storage"]]


# ---- private names ---------------------------------------------------------------------------

def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        and name not in PUBLIC_UNDERSCORE


def own_names(tree: ast.Module) -> set[str]:
    """The names a module defines itself: its functions, classes and methods, the names it
    assigns at module or class level, and the attributes it assigns (``self._x = ...``).
    A function's local variables are not among them."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def private_uses(path: Path) -> Iterator[tuple[str, int]]:
    """Another module's private names used in ``path``, as ``(name, line)``: ``from m import
    _x``; ``m._x`` and ``obj._x`` where the object is not ``self``, ``cls`` or ``super()``.
    Names the module defines itself are its own, whoever's object they are read from."""
    tree = ast.parse(path.read_text(), str(path))
    own = own_names(tree)
    modules = {a.asname or a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if is_private(a.name):
                    yield a.name, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                for part in a.name.split("."):
                    if is_private(part):
                        yield part, node.lineno
        elif isinstance(node, ast.Attribute) and is_private(node.attr) and not is_own(node, own, modules):
            yield node.attr, node.lineno


def is_own(node: ast.Attribute, own: set[str], modules: set[str]) -> bool:
    """Whether ``obj._x`` reads a name of this module: ``self``/``cls``/``super()``'s, or a name
    the module defines, unless it is read from an imported module (``m._x`` is always foreign)."""
    obj = node.value
    if isinstance(obj, ast.Name) and obj.id in modules:
        return False
    if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
        return True
    if isinstance(obj, ast.Call) and isinstance(obj.func, ast.Name) and obj.func.id == "super":
        return True
    return node.attr in own


def private_violations(root: Path, packages: list[str]) -> set[str]:
    return {f"{p.relative_to(root).as_posix()}:{name}"
            for p in sources(root, *[pkg for pkg in packages if (root / pkg).is_dir()])
            for name, _ in private_uses(p)}


def test_no_module_uses_another_modules_private_names():
    found = private_violations(ROOT, PACKAGES)
    assert sorted(found - ALLOWLIST) == [], "make the name public, or move its use into its module"
    assert sorted(ALLOWLIST - found) == [], "fixed: remove these from ALLOWLIST"


def test_the_checker_sees_private_names(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        "from m import _a, __version__\n"
        "import m\n"
        "class K:\n"
        "    def __init__(self, other):\n"
        "        self._mine = other._theirs\n"      # obj._name of another object
        "        self._b = m._c\n"                  # mod._name
        "        super()._setup()\n"
        "    def __eq__(self, other):\n"
        "        return self._mine == other._mine\n"  # the module's own name
        "    def f(self, row, _local):\n"
        "        _role = row._asdict(), self.__dict__\n"
        "        return self.drive._role, self.drive._local\n")
    assert sorted(name for name, _ in private_uses(f)) == ["_a", "_c", "_local", "_role", "_theirs"]


# ---- the client, bench, and the way into storage ---------------------------------------------

def client_package(root: Path) -> Path:
    """The user's client, the top-level client/ package."""
    return root / "client"


def client_violations(root: Path) -> list[str]:
    pkg = client_package(root)
    own = module_name(pkg / "__init__.py", root)
    bad = []
    for p in sorted(pkg.rglob("*.py")):
        for module, _, line in imported_modules(p, root, set()):
            if module == own or module.startswith(own + "."):
                continue
            if module.split(".")[0] in CLIENT_FORBIDDEN:
                bad.append(f"{p.relative_to(root).as_posix()}:{line} imports {module}")
    return bad


def test_the_client_imports_none_of_the_servers_dependencies():
    assert client_violations(ROOT) == []


def test_the_checker_sees_the_client_import_the_server(tmp_path):
    pkg = tmp_path / "client"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import requests\nfrom client.api import Api\n")
    (pkg / "api.py").write_text("from . import wire\nimport sqlalchemy as sa\n"
                                "def f():\n    from webapi.util import body\n")
    assert client_violations(tmp_path) == ["client/api.py:2 imports sqlalchemy",
                                           "client/api.py:4 imports webapi.util"]


def imports_of_tests(root: Path, package: str) -> list[str]:
    return [f"{p.relative_to(root).as_posix()}:{line} imports {module}"
            for p in sources(root, package)
            for module, _, line in imported_modules(p, root, set()) if module.split(".")[0] == "tests"]


def test_bench_imports_nothing_of_tests():
    assert imports_of_tests(ROOT, "bench") == []


def test_the_checker_sees_bench_import_tests(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "x.py").write_text("from harness.server import BIN\n"
                                             "def f():\n    from tests.e2e.conftest import served\n")
    assert imports_of_tests(tmp_path, "bench") == ["bench/x.py:3 imports tests.e2e.conftest"]


def private_storage_imports(root: Path, *packages: str) -> list[str]:
    """Imports from storage, in ``packages``, of a module or name that starts with ``_``."""
    bad = []
    for p in sources(root, *packages):
        for module, name, line in imported_modules(p, root, set()):
            parts = module.split(".")
            if parts[0] == "storage" and any(is_private(x) for x in [*parts, name] if x):
                bad.append(f"{p.relative_to(root).as_posix()}:{line} {module} {name}".rstrip())
    return bad


def test_jobs_and_webapi_reach_storage_only_through_public_names():
    assert private_storage_imports(ROOT, "jobs", "webapi") == []


def test_the_checker_sees_a_private_storage_import(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "gc.py").write_text("from storage.blockstore import BlockStore, _Checksummed\n"
                                             "import storage._internal\nfrom jobs import _x\n")
    assert private_storage_imports(tmp_path, "jobs") == ["jobs/gc.py:1 storage.blockstore _Checksummed",
                                                         "jobs/gc.py:2 storage._internal"]

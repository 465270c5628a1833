"""The product's import graph (issue 15): the core imports no part and no tool; each
part (streaming, batch, serving_api) imports only the core and itself; the tools (the
CLI, the web UI) may import everything below them, and the UI not the CLI (which runs
it); nothing imports the parts by the top-level names `streaming`, `batch`,
`serving_api`; no import cycles.

Every import statement counts: at module level, inside a function, and under
`if TYPE_CHECKING:` (it does not run, but a cycle through it is still a cycle in the
design), so a function-level import cannot hide a cycle or a layer crossing. An import
also runs the `__init__` of each package above its target that is not above the
importer, so those count too. Imports through importlib with the module name in data
(the CLI's COMMANDS table, lazy package attributes) are not statements and are not seen.

Pure ast over the source folders, nothing imported: ~0.7 s of CPU for ~180 files,
nearly all of it ast.parse.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ("streaming", "batch", "serving_api")
# Tools: above the core and the parts, in featureline/ (issue 16 added the web UI).
TOOLS = ("cli", "ui")
# Generated gRPC code (serving_api/_gen): it imports only protobuf, grpc and itself.
GENERATED = "_gen"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (or a package whose __init__ the import runs)
    path: Path
    line: int
    where: str  # "module level", "in a function", "under TYPE_CHECKING"

    def __str__(self) -> str:
        rel = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{rel}:{self.line} {self.source} -> {self.target} ({self.where})"


@dataclass
class Graph:
    files: dict[str, tuple[Path, bool]]  # module -> (file, is a package __init__)
    imports: list[Import]

    def edges(self) -> dict[str, dict[str, Import]]:
        out: dict[str, dict[str, Import]] = {m: {} for m in self.files}
        for imp in self.imports:
            out[imp.source].setdefault(imp.target, imp)
        return out


def product_roots() -> dict[str, Path]:
    """Module prefix -> folder: the core and the CLI in featureline/ (the part links
    in it are skipped), the parts in the design card's top-level folders, mapped to the
    names they install as (pyproject's package-dir)."""
    roots = {"featureline": REPO / "featureline"}
    roots.update({f"featureline.{part}": REPO / part for part in PARTS})
    return roots


def _modules(roots: dict[str, Path]) -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for prefix, root in roots.items():
        # Links are not followed: featureline/<part> is the part's folder, read as its root.
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in (GENERATED, "__pycache__"))
            for name in sorted(n for n in names if n.endswith(".py")):
                path = Path(folder, name)
                parts = [*prefix.split("."), *path.relative_to(root).with_suffix("").parts]
                is_package = parts[-1] == "__init__"
                out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _imports(nodes: list[ast.AST], where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Import statements with where they run; only statement lists are walked (an
    import is a statement, never inside an expression)."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            continue
        inner = "in a function" if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else where
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(list(node.body), "under TYPE_CHECKING")
            yield from _imports(list(node.orelse), where)
            continue
        for field in _BLOCKS:
            yield from _imports(getattr(node, field, None) or [], inner)


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _known(name: str, files: dict[str, tuple[Path, bool]]) -> str | None:
    """The module `name` runs: itself, or the deepest module above it that exists (an
    attribute or an unknown submodule); None outside the product or in generated code."""
    parts = name.split(".")
    if parts[0] != "featureline" or GENERATED in parts:
        return None
    while parts and ".".join(parts) not in files:
        parts.pop()
    return ".".join(parts) or None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def build_graph(roots: dict[str, Path]) -> Graph:
    files = _modules(roots)
    imports: list[Import] = []
    for module, (path, is_package) in files.items():
        tree = ast.parse(path.read_text(), str(path))
        above_me = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for node, where in _imports(list(tree.body), "module level"):
            names = list(_targets(node, module, is_package))
            if isinstance(node, ast.ImportFrom):
                # `from X import n`: the submodule X.n where n is one; X itself for a name.
                subs = [n for n in names[1:] if n in files]
                names = subs if len(subs) == len(names) - 1 else [names[0], *subs]
            for name in names:
                target = _known(name, files)
                if target is None:
                    continue
                pieces = target.split(".")
                packages = {".".join(pieces[:i]) for i in range(1, len(pieces))} - above_me
                for dep in sorted(packages | {target}):
                    if dep != module and dep in files:
                        imports.append(Import(module, dep, path, node.lineno, where))
    return Graph(files, imports)


def layer(module: str) -> str:
    """core, a tool's name (cli, ui), or the part's name."""
    second = module.split(".")[1] if "." in module else ""
    return second if second in (*PARTS, *TOOLS) else "core"


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def one_cycle(component: list[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest path from the component's first module back to it, as its imports."""
    start, members = component[0], set(component)
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, imp in sorted(edges[node].items()):
                if target == start:
                    path = [imp]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if target in members and target not in came:
                    came[target] = imp
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe(components: list[list[str]], edges: dict[str, dict[str, Import]]) -> str:
    lines = []
    for component in components:
        lines.append(f"cycle of {len(component)} modules: {', '.join(component)}")
        lines += [f"    {imp}" for imp in one_cycle(component, edges)]
    return "\n".join(lines)


def listing(imports: list[Import]) -> str:
    """One line per import statement (its deepest target; the packages above it that it
    also runs are left out)."""
    deepest: dict[tuple[Path, int, str], Import] = {}
    for imp in imports:
        key = (imp.path, imp.line, imp.source)
        if key not in deepest or len(imp.target) > len(deepest[key].target):
            deepest[key] = imp
    return "\n".join(str(imp) for _, imp in sorted(deepest.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])))


@cache
def product() -> Graph:
    return build_graph(product_roots())


def test_the_graph_holds_every_layer_and_resolves_the_imports_it_names() -> None:
    graph = product()
    layers = {layer(m) for m in graph.files}
    assert layers == {"core", *TOOLS, *PARTS}
    assert len(graph.files) > 100
    edges = graph.edges()
    # One known import of each kind the parser must resolve (absolute, from-submodule).
    assert "featureline.kafka_admin" in edges["featureline.streaming.pipeline"]
    assert "featureline.streaming.dlq" in edges["featureline.streaming.pipeline"]


def test_the_core_imports_no_part_and_no_tool() -> None:
    bad = [imp for imp in product().imports if layer(imp.source) == "core" and layer(imp.target) != "core"]
    if bad:
        pytest.fail("the core imports a layer above it:\n" + listing(bad), pytrace=False)


def test_the_ui_does_not_import_the_cli() -> None:
    bad = [imp for imp in product().imports if layer(imp.source) == "ui" and layer(imp.target) == "cli"]
    if bad:
        pytest.fail("the web UI imports the CLI (the CLI runs the UI):\n" + listing(bad), pytrace=False)


def test_each_part_imports_only_the_core_and_itself() -> None:
    bad = [
        imp
        for imp in product().imports
        if layer(imp.source) in PARTS and layer(imp.target) not in ("core", layer(imp.source))
    ]
    if bad:
        pytest.fail("a part imports another part or a tool:\n" + listing(bad), pytrace=False)


def test_nothing_imports_the_parts_by_their_top_level_folder_names() -> None:
    folders = [REPO / "featureline", *(REPO / p for p in PARTS), REPO / "tests", REPO / "benchmarks"]
    bad = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                bad += [
                    f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in PARTS
                ]
    if bad:
        pytest.fail("import them as featureline.<part>:\n" + "\n".join(sorted(set(bad))), pytrace=False)


def test_no_import_cycles() -> None:
    edges = product().edges()
    found = cycles(edges)
    if found:
        pytest.fail("import cycles (each with one path round it):\n" + describe(found, edges), pytrace=False)


# Redis clients: only the online store's adapters (featureline/online_store) use them;
# everything else, benchmarks included, goes through its seam (issue 13).
STORE_CLIENTS = ("redis", "hiredis")
STORE_PACKAGE = REPO / "featureline" / "online_store"


def store_client_imports(folders: list[Path]) -> list[str]:
    """`path:line name` of each import of a Redis client outside the online store."""
    bad = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            if path.is_relative_to(STORE_PACKAGE) or GENERATED in path.parts:
                continue
            for node, _ in _imports(list(ast.parse(path.read_text(), str(path)).body), ""):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    names = [node.module or ""] if node.level == 0 else []
                bad += [f"{path}:{node.lineno} {n}" for n in names if n.split(".")[0] in STORE_CLIENTS]
    return bad


def test_only_the_online_store_imports_a_redis_client() -> None:
    folders = [REPO / "featureline", *(REPO / p for p in PARTS), REPO / "benchmarks"]
    bad = store_client_imports(folders)
    if bad:
        pytest.fail(
            "import the online store (featureline.online_store) instead:\n" + "\n".join(bad), pytrace=False
        )


def test_a_redis_client_imported_in_a_function_is_found(tmp_path: Path) -> None:
    _write(tmp_path, {"a.py": "def f():\n    from redis.retry import Retry\n", "b.py": "import redisx\n"})
    assert store_client_imports([tmp_path]) == [f"{tmp_path / 'a.py'}:2 redis.retry"]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_closed_inside_a_function_or_under_type_checking_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path / "featureline",
        {
            "__init__.py": "",
            "a.py": "from featureline import b\n",
            "b.py": "def f():\n    from .a import x\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import featureline.d\n",
            "d.py": "from featureline.c import name\n",
            "e.py": "import featureline.f\n",  # no cycle: f imports only os
            "f.py": "import os\n",
        },
    )
    edges = build_graph({"featureline": tmp_path / "featureline"}).edges()
    found = cycles(edges)
    assert found == [["featureline.a", "featureline.b"], ["featureline.c", "featureline.d"]]
    text = describe(found, edges)
    assert "b.py:2 featureline.b -> featureline.a (in a function)" in text
    assert "c.py:3 featureline.c -> featureline.d (under TYPE_CHECKING)" in text


def test_imports_resolve_relative_names_submodules_and_the_packages_they_run(tmp_path: Path) -> None:
    _write(
        tmp_path / "featureline",
        {
            "__init__.py": "",
            "core.py": "X = 1\n",
            "batch/__init__.py": "",
            "batch/job.py": "from ..core import X\nfrom . import util\n",
            "batch/util.py": "",
            "serving_api/__init__.py": "",
            "serving_api/deep/__init__.py": "",
            "serving_api/deep/mod.py": "import featureline.batch.util as u\nimport numpy\n",
        },
    )
    edges = build_graph({"featureline": tmp_path / "featureline"}).edges()
    assert set(edges["featureline.batch.job"]) == {"featureline.core", "featureline.batch.util"}
    # Importing featureline.batch.util also runs featureline.batch's __init__.
    assert set(edges["featureline.serving_api.deep.mod"]) == {"featureline.batch", "featureline.batch.util"}
    assert layer("featureline.serving_api.deep.mod") == "serving_api"
    assert layer("featureline.core") == "core"

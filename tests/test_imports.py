"""No import circles inside the package: the graph of every ``import`` in ``hqvae/`` (at module level
and inside functions, read with ``ast``) has no cycle, and nothing imports the package root from
inside (the version lives in ``hqvae._version``)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hqvae"


def module_names() -> dict[str, Path]:
    """hqvae module name -> file (a package is its ``__init__.py``)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the hqvae modules it imports (``from a import b`` names ``a.b`` when that is a module)."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                targets = [node.args[0].value]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "hqvae.train.engine" in graph["hqvae.train.tokenizer"]  # module level
    assert "hqvae.train.tokenizer" in graph["hqvae.cli.train"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_circle():
    found = cycles(import_graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_the_package_root():
    importers = {name for name, targets in import_graph().items() if "hqvae" in targets and name != "hqvae"}
    upward = sorted(importers)
    assert upward == [], f"{upward} import hqvae itself (upward); import the module that defines the name"


def test_every_benchmark_script_imports():
    """The benchmark scripts are not exercised by the suite; a renamed library name must still fail here."""
    import importlib.util

    for path in sorted((PACKAGE.parent / "benchmarks").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_benchmark_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))

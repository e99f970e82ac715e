"""The package's shape, checked: no import circles, no internal use of the facade or of another
package's private names, leaf utilities, a light CLI import, a facade whose names resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sepconv

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "sepconv"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, module- or function-level, those under ``if TYPE_CHECKING:``
    included: a type-only import that closes a circle is a circle in the design all the same."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def _base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, resolving relative imports."""
    if not node.level:
        return node.module or ""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str) -> Iterator[tuple[str, str | None, ast.stmt]]:
    """(imported module, imported name or None, statement) for each import in ``module``,
    with ``from pkg import sub`` resolved to the submodule ``pkg.sub`` when it is one."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node
            continue
        base = _base(module, node)
        for alias in node.names:
            if f"{base}.{alias.name}" in MODULES:
                yield f"{base}.{alias.name}", None, node
            else:
                yield base, alias.name, node


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            if target not in MODULES or target == module:
                continue
            # A package's __init__ importing its own children is how it exports them.
            if module in PACKAGES and target.startswith(module + "."):
                continue
            graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _where(module: str, node: ast.stmt) -> str:
    return f"{MODULES[module].relative_to(SRC.parent)}:{node.lineno}"


def test_checker_sees_nested_imports_circles_and_private_names() -> None:
    tree = ast.parse("def f():\n    from . import b\n    import c.d\n")
    found = [type(n).__name__ for n in _import_nodes(tree)]
    assert sorted(found) == ["Import", "ImportFrom"]
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import e\n")
    assert [n.names[0].name for n in _import_nodes(typed)] == ["TYPE_CHECKING", "e"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _owner("sepconv.models._registry", None) == "sepconv.models"
    assert _owner("sepconv.deploy.onnx", "_check_input_size") == "sepconv.deploy"
    assert _owner("sepconv.models.mobilenet_v1", "MobileNetV1") is None


def test_no_import_circles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles among sepconv modules: " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_internal_import_of_the_facade() -> None:
    offenders = []
    for module in MODULES:
        if module == "sepconv":
            continue
        for target, name, node in _imports(module):
            if target == "sepconv":
                offenders.append(f"{_where(module, node)} ({module} imports {name or 'sepconv'})")
    assert not offenders, "modules importing the `sepconv` facade:\n" + "\n".join(offenders)


def _owner(target: str, name: str | None) -> str | None:
    """The package a private module or name belongs to, or None if nothing private is named."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    if name and name.startswith("_") and not name.startswith("__"):
        return target if target in PACKAGES else target.rpartition(".")[0]
    return None


def test_no_import_of_another_packages_private_names() -> None:
    offenders = []
    for module in MODULES:
        for target, name, node in _imports(module):
            if not target.startswith("sepconv"):
                continue
            owner = _owner(target, name)
            if owner is not None and not (module == owner or module.startswith(owner + ".")):
                what = f"{target}.{name}" if name else target
                offenders.append(f"{_where(module, node)} ({module} imports {what})")
    assert not offenders, "private names imported across packages:\n" + "\n".join(offenders)


def test_utils_is_a_leaf() -> None:
    offenders = []
    for module in MODULES:
        if module != "sepconv.utils" and not module.startswith("sepconv.utils."):
            continue
        for target, _, node in _imports(module):
            if target.split(".")[0] == "sepconv" and not target.startswith("sepconv.utils"):
                offenders.append(f"{_where(module, node)} ({module} imports {target})")
    assert not offenders, "sepconv.utils must import nothing else of sepconv:\n" + "\n".join(
        offenders
    )


def test_cli_parser_imports_no_heavy_runtime() -> None:
    heavy = ("onnxruntime", "openvino", "matplotlib", "onnx")
    code = (
        "import sys, sepconv.cli\n"
        "sepconv.cli.build_parser()\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"building the CLI parser imported {done.stdout.strip()}"


@pytest.mark.parametrize("name", sepconv.__all__)
def test_facade_names_resolve(name: str) -> None:
    assert getattr(sepconv, name) is not None


def test_file_size_limit() -> None:
    """Size limit of source files: a module past MAX_LINES is doing several jobs."""
    long = {
        str(p.relative_to(SRC.parent)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"

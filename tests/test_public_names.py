"""The public names, written once: the facade's table, the models package's exports, and the
direction of the dependencies between models, conversions and model files."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sepconv
import sepconv.models
from sepconv.models import get_model_info, list_models

PACKAGE = Path(sepconv.__file__).parent


def _facade_imports() -> dict[str, str]:
    """Name -> module of every import under the facade's ``if TYPE_CHECKING:``."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.unparse(stmt)
                for alias in stmt.names:
                    # `name as name`: type checkers read it as a re-export
                    assert alias.asname == alias.name, ast.unparse(stmt)
                    names[alias.name] = stmt.module
    return names


def test_all_dir_and_lazy_loading_derive_from_the_type_checking_imports() -> None:
    names = _facade_imports()
    assert sepconv.__all__ == sorted(["__version__", *names])
    assert set(names) <= set(dir(sepconv))
    for name, module in names.items():
        assert getattr(sepconv, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        sepconv.not_a_name  # noqa: B018


def test_the_facade_keeps_its_public_names() -> None:
    # The names documented before the table was written once (docs/reference/api.md).
    for name in ("save_model", "load_model", "load_weights", "create_model", "list_models"):
        assert name in sepconv.__all__


@pytest.mark.parametrize("name", list_models())
def test_every_registered_builder_is_exported_by_the_models_package(name: str) -> None:
    # A family's module lists its builders in its __all__; the package re-exports it whole.
    assert getattr(sepconv.models, name) is get_model_info(name).builder


def _sepconv_imports(path: Path) -> set[str]:
    """Every sepconv module a source file imports, at module or function level."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("sepconv")}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("models", ("sepconv.convert", "sepconv.modelfile")),
        ("layers", ("sepconv.models", "sepconv.convert", "sepconv.modelfile")),
        ("convert", ("sepconv.modelfile",)),
    ],
)
def test_dependencies_run_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    # layers <- models <- convert <- modelfile: the file format replays conversions, the
    # models know nothing of either.
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / package).glob("*.py"))
        for name in _sepconv_imports(path)
        if name.startswith(forbidden)
    }
    assert not offenders

"""The package boundaries the README promises, read from the source's import statements.

Every import counts, also those inside functions: a lazy import hides a dependency from
start-up time, not from the design.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# prompt_words, what a word is, sits below them all: every package may import it.
PACKAGES = ("prompt_words", "server", "client_tui", "model_store", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` is a.b when b is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")]
    modules = {_module_name(path) for path in paths}
    graph = {_module_name(path): _imports(path, modules) for path in paths}
    assert len(graph) > 50 and any(graph.values()), "the import graph came out empty"
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("prompt_words", {"server", "client_tui", "model_store", "benchmarks"}),
        ("model_store", {"server", "client_tui", "benchmarks"}),
        ("server", {"client_tui", "benchmarks"}),
        ("client_tui", {"server", "model_store", "benchmarks"}),
    ],
)
def test_packages_import_only_downwards(
    graph: dict[str, set[str]], package: str, forbidden: set[str]
) -> None:
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if _top(module) == package
        for target in targets
        if _top(target) in forbidden
    }
    assert not wrong


def test_prompt_words_needs_only_the_standard_library() -> None:
    imported: set[str] = set()
    for path in (REPO_ROOT / "prompt_words").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_no_module_imports_itself_through_others(graph: dict[str, set[str]]) -> None:
    # A package's __init__ may re-export a submodule that imports from the package's other
    # modules; only module-to-module edges make a cycle worth fixing.
    edges = {
        module: {
            target for target in targets if not (REPO_ROOT / target.replace(".", "/")).is_dir()
        }
        for module, targets in graph.items()
    }
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError naming the cycle

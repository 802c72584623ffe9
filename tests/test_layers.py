"""The package's layers import one way and no module takes part in an import cycle.

Layers, bottom to top (docs/design.md): ``core`` < ``llm``, ``data`` < ``distillation``,
``training`` < ``evaluation`` < the commands (every other top-level module or package: ``cli``,
``cost``, ``startup``, ...). A module may import from its own layer or below. Every import
statement is read with ``ast``, those inside function bodies included (an import inside a
function that dodges a cycle is still a dependency); only the body of an ``if TYPE_CHECKING:``
block is left out, since it never runs. Relative imports are resolved against the module's
package, and ``from package import name`` counts as an import of ``package.name`` when that is
a module. An import of ``a.b.c`` is an edge to ``a.b.c`` only: the parent packages' ``__init__``
modules it also runs are not counted (as import-linter and pydeps do).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PACKAGE = "empathy_distill"
PACKAGE_DIR = REPO_ROOT / "workflow" / PACKAGE
#: Layer of each subpackage; the package root (``REPO_ROOT``) sits with core, and every other
#: top-level module or package is a command (it composes the stages).
LAYERS = {"": 0, "core": 0, "llm": 1, "data": 1, "distillation": 2, "training": 2, "evaluation": 3}
COMMANDS = 4
LAYER_NAMES = {
    0: "core",
    1: "llm/data",
    2: "distillation/training",
    3: "evaluation",
    4: "commands",
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return LAYERS.get(top, COMMANDS)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, function bodies included, ``if TYPE_CHECKING:`` bodies not."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in modules else base)
    return {t for t in targets if t in modules and t != module}


def unresolved_imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Imports of the package's own names that name no module of it (a stale relative path)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    missing = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
            missing.update(n for n in names if n not in modules)
            continue
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] == PACKAGE and base not in modules:
            missing.add(base)
    return missing


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
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
            connect(node)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{source} ({LAYER_NAMES[layer_of(source)]}) imports {target}"
        f" ({LAYER_NAMES[layer_of(target)]})"
        for source in sorted(graph)
        for target in sorted(graph[source])
        if layer_of(target) > layer_of(source)
    ]


def test_the_reader_sees_imports_inside_functions_and_resolves_relative_ones(tmp_path):
    """The reader itself: a function-local relative import and a from-import of a module count;
    a TYPE_CHECKING import does not (checked on a small package written here)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n    from ..evaluation import judge\n"
        "def f():\n    from ..training.methods import method\n    import empathy_distill.llm\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = {
        "empathy_distill.core.mod": path,
        "empathy_distill.core.sibling": path,
        "empathy_distill.training.methods": path,
        "empathy_distill.evaluation.judge": path,
        "empathy_distill.llm": path,
    }
    assert imports_of("empathy_distill.core.mod", path, modules) == {
        "empathy_distill.core.sibling",
        "empathy_distill.training.methods",
        "empathy_distill.llm",
    }
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_reader_finds_the_package():
    graph = import_graph()
    # a few imports every version of the package has: the reader must see them
    assert "empathy_distill.core.errors" in graph["empathy_distill.core.config"]
    assert "empathy_distill.llm.client" in graph["empathy_distill.llm.job"]
    assert len(graph) > 100


def test_every_import_of_the_package_names_one_of_its_modules():
    """An import the reader cannot resolve would be an edge it cannot check (and an error)."""
    modules = module_files()
    missing = {
        name: sorted(unresolved_imports(name, path, modules)) for name, path in modules.items()
    }
    assert not {name: found for name, found in missing.items() if found}


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("layer", sorted(LAYER_NAMES))
def test_no_layer_imports_a_higher_one(layer):
    graph = import_graph()
    upward = [line for line in upward_imports(graph) if layer_of(line.split()[0]) == layer]
    assert not upward, "upward imports:\n" + "\n".join(upward)

"""The package's imports, read from the sources with ``ast``: no import cycle, no private name imported across modules.

A cycle is what made ``mip grid`` import the CLI back from an executor (cli -> grid runner ->
executors -> slurm -> cli): modules in a circle can only be understood, tested and moved together.
Imports inside functions count (they run, just later); imports under ``if TYPE_CHECKING:`` do not
(they never run). A parent package is not counted as imported by its submodules: Python runs it
first, and a package re-exporting its submodules is the usual pattern, not a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import miprometheus

PACKAGE = Path(miprometheus.__file__).parent
ROOT = PACKAGE.parent
#: the sources whose imports of the package's private names are checked (the package and its users here)
SOURCES = [PACKAGE, ROOT / "tests", ROOT / "bench"]


@dataclass(frozen=True)
class Import:
    """One import statement of a module: what it imports and where."""

    module: str  # the importing module
    target: str  # the package module imported (``from a.b import c`` gives a.b.c when c is a module, else a.b)
    names: tuple[str, ...]  # the names taken by ``from ... import``; empty for ``import a.b``
    line: int
    in_function: bool  # under a def: runs when the function does, not when the module is imported


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body: list[ast.stmt], in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """The import statements of ``body`` and of the blocks inside it, except type-checking-only ones."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _import_nodes(node.orelse, in_function)
            continue
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, None) or []:
                yield from _import_nodes([child] if isinstance(child, ast.stmt) else child.body, inner)


def imports_of(path: Path, modules: dict[str, Path] | None = None) -> list[Import]:
    """The package modules that the source at ``path`` imports (imports of other libraries are left out)."""
    modules = package_modules() if modules is None else modules
    name = module_name(path) if path.is_relative_to(PACKAGE) else path.stem
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, in_function in _import_nodes(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            targets = [(alias.name, ()) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # a relative import: resolved against the importing module's package
                package = name.split(".")[: len(name.split(".")) - (0 if is_package else 1)]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            targets = [(t, ()) for t in submodules] + [(base, tuple(n for n in names if f"{base}.{n}" not in modules))]
        for target, names in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a.b: the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append(Import(name, target, names, node.lineno, in_function))
    return found


def import_graph() -> dict[str, list[Import]]:
    modules = package_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, list[Import]]) -> list[Import] | None:
    """One import cycle (its edges in order), or None."""
    state: dict[str, str] = {}  # "open" while on the depth-first path, "done" after
    path: list[Import] = []

    def visit(module: str) -> list[Import] | None:
        state[module] = "open"
        for edge in graph.get(module, []):
            if state.get(edge.target) == "open":
                start = next((i for i, e in enumerate(path) if e.module == edge.target), len(path))
                return [*path[start:], edge]
            if edge.target not in state:
                path.append(edge)
                cycle = visit(edge.target)
                if cycle:
                    return cycle
                path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe(cycle: list[Import]) -> str:
    return "\n".join(f"  {e.module} (line {e.line}{', in a function' if e.in_function else ''}) imports {e.target}"
                     for e in cycle)


def test_the_reader_sees_module_and_function_level_imports_but_not_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "user.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "import miprometheus.layout\n"
                      "if TYPE_CHECKING:\n"
                      "    from miprometheus.errors import MipError\n"
                      "def write() -> None:\n"
                      "    from miprometheus.files import atomic_write_text\n")
    found = {(e.target, e.in_function) for e in imports_of(source)}
    assert found == {("miprometheus.layout", False), ("miprometheus.files", True)}
    assert find_cycle({"a": [Import("a", "b", (), 1, False)], "b": [Import("b", "a", (), 2, True)]}) is not None
    assert find_cycle({"a": [Import("a", "b", (), 1, False)], "b": []}) is None


def test_no_import_cycle_at_module_level() -> None:
    graph = {module: [e for e in edges if not e.in_function] for module, edges in import_graph().items()}
    cycle = find_cycle(graph)
    assert cycle is None, "an import cycle among module-level imports:\n" + describe(cycle or [])


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "an import cycle (imports inside functions count: they run when called):\n" + describe(
        cycle or [])


def _private_imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    for edge in imports_of(path, modules):
        for name in edge.names:
            if name.startswith("_") and not name.startswith("__"):
                yield f"{path.relative_to(ROOT)}:{edge.line}: {name} from {edge.target}"
        if any(part.startswith("_") and not part.startswith("__") for part in edge.target.split(".")):
            yield f"{path.relative_to(ROOT)}:{edge.line}: the private module {edge.target}"


def test_no_private_name_is_imported_from_another_module() -> None:
    """A name starting with one underscore is its module's own; another module (or a test) needs a public name."""
    modules = package_modules()
    found = [line for folder in SOURCES for path in sorted(folder.rglob("*.py"))
             for line in _private_imports(path, modules)]
    assert not found, "private names imported across modules:\n" + "\n".join(found)

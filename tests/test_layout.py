"""Experiment and grid file names are spelled once, in ``miprometheus/layout.py``.

Experiments, tests, grids, the grid analysis and transfer runs meet through these files; a name spelled
again elsewhere is one that can drift from the others. The scan reads the package's sources with
``ast`` and looks for the values of layout's constants in string literals (documentation aside:
docstrings, parameter docs and ``help=`` texts describe the files to people, in words they read):
a file name (``model_best.pt``) anywhere in a literal, a folder name (``models``) where it is a
path (``folder / "models"``, ``"models/..."``, ``Path("models")``), a prefix (``test_``) where a
folder name is built from it (``f"test_{timestamp}"``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import miprometheus
from miprometheus import layout

PACKAGE = Path(miprometheus.__file__).parent
LAYOUT = Path(layout.__file__)

#: (file relative to the package, value) -> why the literal is not the layout name but a coincidence
COINCIDENCES: dict[tuple[str, str], str] = {}


def layout_names() -> dict[str, str]:
    """Layout's string constants: value -> name (names, when two folders share a name: experiments/)."""
    names: dict[str, list[str]] = {}
    for name, value in vars(layout).items():
        if name.isupper() and isinstance(value, str):
            names.setdefault(value, []).append(name)
    return {value: " or layout.".join(found) for value, found in names.items()}


def _documentation(tree: ast.AST) -> set[int]:
    """The literals that document rather than name a file: docstrings, ``param(default, doc)`` docs, ``help=``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
        elif isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            documents = [*(node.args[1:] if callee == "param" else []),
                         *(k.value for k in node.keywords if k.arg in ("doc", "help", "description", "epilog"))]
            found |= {id(n) for doc in documents for n in ast.walk(doc)}
    return found


def _path_operands(tree: ast.AST) -> set[int]:
    """The string literals that are joined as paths: ``x / "name"``, ``Path("name")``, ``.joinpath("name")``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found |= {id(side) for side in (node.left, node.right) if isinstance(side, ast.Constant)}
        elif isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee in ("Path", "PurePath", "joinpath", "with_name", "glob", "rglob"):
                found |= {id(arg) for arg in node.args if isinstance(arg, ast.Constant)}
    return found


def spelled(value: str, text: str, is_path: bool, before_placeholder: bool) -> bool:
    """Whether the literal piece ``text`` spells the layout name ``value``."""
    text = re.sub(r"https?://\S*", "", text)  # a web address (download.pytorch.org/models/) names no file here
    if "." in value:  # a file name: anywhere, as a whole word
        return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", text) is not None
    if value.endswith("_"):  # a prefix: a name built from it, f"test_{...}" or "test_*"
        return text.endswith(value) and before_placeholder or re.search(
            rf"(?:^|/){re.escape(value)}\*", text) is not None
    # a folder name: as a path, or a component of one
    return (is_path and text == value) or re.search(
        rf"(?:^|/){re.escape(value)}/|/{re.escape(value)}$", text) is not None


def spellings(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, value, literal) of every literal in ``path`` that spells a layout name."""
    tree = ast.parse(path.read_text(), str(path))
    documentation, path_operands = _documentation(tree), _path_operands(tree)
    names = layout_names()
    pieces: list[tuple[ast.Constant, bool]] = []  # literal text, and whether a {placeholder} follows it
    in_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for i, part in enumerate(node.values):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    following = node.values[i + 1] if i + 1 < len(node.values) else None
                    pieces.append((part, isinstance(following, ast.FormattedValue)))
                    in_fstrings.add(id(part))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstrings
                and id(node) not in documentation):
            pieces.append((node, False))
    for node, before_placeholder in pieces:
        if id(node) in documentation:
            continue
        for value in names:
            if spelled(value, node.value, id(node) in path_operands, before_placeholder):
                yield node.lineno, value, node.value


def test_the_scan_finds_names_spelled_as_literals(tmp_path: Path) -> None:
    source = tmp_path / "spells.py"
    source.write_text('"""Docstrings may name model_best.pt."""\n'
                      'from pathlib import Path\n'
                      'def best(folder):\n'
                      '    return folder / "models" / "model_best.pt"\n'
                      'def log(i):\n'
                      '    return f"logs/{i}.train.log", f"test_{i}", "the models we have", "models"\n')
    found = {(line, value) for line, value, _ in spellings(source)}
    assert found == {(4, layout.MODELS_DIR), (4, layout.BEST), (6, layout.GRID_LOGS_DIR),
                     (6, layout.TEST_DIR_PREFIX)}


def test_experiment_and_grid_file_names_are_spelled_only_in_layout() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == LAYOUT:
            continue
        relative = str(path.relative_to(PACKAGE))
        for line, value, literal in spellings(path):
            if (relative, value) not in COINCIDENCES:
                found.append(f"miprometheus/{relative}:{line}: {literal!r} spells layout.{layout_names()[value]}")
    assert not found, "use the constants of miprometheus/layout.py:\n" + "\n".join(found)


def test_every_coincidence_is_still_there() -> None:
    """An allowed coincidence that is gone is taken off the list, so the list says what is true."""
    stale = [key for key in COINCIDENCES
             if not any(value == key[1] for _, value, _ in spellings(PACKAGE / key[0]))]
    assert not stale, f"no longer spelled there: {stale}"

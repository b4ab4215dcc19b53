"""docs/DESIGN.md §2 names every module of the package, and every module it names exists.

The §2 code block is an indented tree: a word ending in ``/`` is a folder (``seq_to_seq/algorithmic/`` is
two), and it holds the lines indented below it and the words after it on its own line; a word ending in
``.py`` is a module of the folder it stands in. Comments (from ``#``) are prose and are not read.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "miprometheus"
DESIGN = ROOT / "docs" / "DESIGN.md"
NOT_COUNTED = {"__init__.py", "__main__.py"}


def layout_block(text: str) -> str:
    """The first code block of the section "## 2." of DESIGN.md."""
    match = re.search(r"^## 2\..*?$(.*?)^## 3\.", text, flags=re.M | re.S)
    assert match, "DESIGN.md has no section '## 2.' followed by '## 3.'"
    block = re.search(r"^```[^\n]*\n(.*?)^```", match.group(1), flags=re.M | re.S)
    assert block, "DESIGN.md §2 has no code block"
    return block.group(1)


def named_in_layout(block: str) -> tuple[set[str], set[str]]:
    """(modules, folders) the block names under ``miprometheus/``, as paths relative to the package."""
    modules: set[str] = set()
    folders: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indentation, path relative to the repository root)
    for line in block.splitlines():
        code = line.split("#", 1)[0]
        if not code.strip():
            continue
        indent = len(code) - len(code.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        folder = stack[-1][1] if stack else ""
        for position, word in enumerate(code.split()):
            if word.endswith("/"):
                path = folder + word
                if path.startswith("miprometheus/") and path != "miprometheus/":
                    folders.add(path[len("miprometheus/"):].rstrip("/"))
                if position == 0:
                    stack.append((indent, path))
                folder = path
            elif word.endswith(".py") and folder.startswith("miprometheus/"):
                modules.add(folder[len("miprometheus/"):] + word)
    return modules, folders


def test_the_layout_in_design_names_every_module_and_only_existing_ones():
    modules, folders = named_in_layout(layout_block(DESIGN.read_text(encoding="utf-8")))
    actual = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts and path.name not in NOT_COUNTED
    }
    actual_folders = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_dir() and path.name != "__pycache__"
    }
    named = {m for m in modules if Path(m).name not in NOT_COUNTED}
    not_in_design = sorted(actual - named)
    not_in_package = sorted((named - actual) | {f + "/" for f in folders - actual_folders})
    assert not not_in_design and not not_in_package, (
        "docs/DESIGN.md §2 and miprometheus/ differ.\n"
        f"Modules of the package that §2 does not name ({len(not_in_design)}): {not_in_design}\n"
        f"Modules and folders §2 names that the package lacks ({len(not_in_package)}): {not_in_package}"
    )


def test_the_layout_parser_reads_folders_lines_and_several_modules_on_a_line():
    block = (
        "miprometheus/\n"
        "  cli.py          # the command; a.py in a comment is prose\n"
        "  problems/\n"
        "    problem.py\n"
        "    seq_to_seq/algorithmic/\n"
        "      serial_recall.py  reverse_recall.py\n"
        "      dual/  dual_task.py\n"
        "  models/\n"
        "    model.py\n"
        "configs/   # not the package\n"
    )
    modules, folders = named_in_layout(block)
    assert modules == {
        "cli.py",
        "problems/problem.py",
        "problems/seq_to_seq/algorithmic/serial_recall.py",
        "problems/seq_to_seq/algorithmic/reverse_recall.py",
        "problems/seq_to_seq/algorithmic/dual/dual_task.py",
        "models/model.py",
    }
    assert folders == {"problems", "problems/seq_to_seq/algorithmic", "problems/seq_to_seq/algorithmic/dual", "models"}


def test_the_tests_folders_mirror_the_package():
    # a test of miprometheus/<a>/<b>/x.py lives in tests/<a>/<b>/: every folder of tests/ is one of the package
    tests = Path(__file__).resolve().parent
    folders = [p.relative_to(tests) for p in tests.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    strays = [str(folder) for folder in folders if not (PACKAGE / folder).is_dir()]
    assert not strays, f"test folders with no package folder of the same path: {strays}"

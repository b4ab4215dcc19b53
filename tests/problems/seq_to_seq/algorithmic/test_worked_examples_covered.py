"""Every worked example of specs/algorithmic_tasks.md is a test: each table's numbers appear in a task test.

The task tests assert their tables exactly against the generated batches (``parse_example``); this test
proves no table of the spec was left out. It reads the spec from ../shared/specs (skipped without it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

SPEC = ROOT.parent / "shared" / "specs" / "algorithmic_tasks.md"
TESTS = sorted(path for path in Path(__file__).resolve().parent.rglob("test_*.py") if path.name != Path(__file__).name)


def numbers_only(row: str) -> str:
    """A table row's step, input, target and mask numbers (the role column and spacing left out)."""
    inputs, outputs = row.split("||")
    cells = outputs.split("|")[:2]
    return " ".join((inputs + " | " + " | ".join(cells)).replace("|", " ").split())


def spec_tables() -> list[tuple[str, list[str]]]:
    """(section heading, rows) of every worked-example table of the spec."""
    tables, section, rows = [], "", None
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            section = line[4:]
        if re.match(r"^\s*t \|", line):
            rows = []
        elif rows is not None and re.match(r"^\s*\d+ \|", line):
            rows.append(numbers_only(line))
        elif rows is not None and not line.startswith("---"):
            tables.append((section, rows))
            rows = None
    return tables


@pytest.mark.skipif(not SPEC.is_file(), reason="the shared specs are not present")
def test_every_worked_example_of_the_spec_is_in_a_task_test():
    tables = spec_tables()
    assert len(tables) >= 26  # the spec's worked examples, from 1.3 (control lines) to 4.8 (operation span)
    tested = []
    for path in TESTS:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "||" in line and re.match(r"^\s*\d+ \|", line):
                tested.append(numbers_only(line))
    text = "\n".join(tested)
    missing = [section for section, rows in tables if "\n".join(rows) not in text]
    assert not missing, f"worked examples with no test: {missing}"

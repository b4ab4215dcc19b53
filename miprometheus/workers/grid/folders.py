"""Finding experiment folders and their test folders by the folder layout (DESIGN §6).

One place for these searches: the grid runner, the SLURM executor (to resume a preempted job) and
the grid analysis all look for "the newest experiment under a job's output" or "the newest test
of an experiment", and must agree on which one it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from miprometheus.layout import GRID_ABANDONED_DIR, RUN_INFO, TEST_DIR_PREFIX, TESTING_AGG_CSV, TRAINING_CONFIG


def newest_experiment(output: Path) -> Path | None:
    """The newest experiment folder ``output/<Problem>/<Model>/<timestamp>/`` of a run's ``--expdir``, if any.

    Newest by the time of its ``training_configuration.yaml`` (ties by name); attempts set aside
    under ``_abandoned/`` are one level shallower and never match.
    """
    found = sorted(Path(output).glob(f"*/*/*/{TRAINING_CONFIG}"), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1].parent if found else None


def _test_order(folder: Path) -> tuple[str, int]:
    # test_<YYYYmmdd_HHMMSS>[_<n>]: the name is the time; the suffix of two tests in one second counts as a number
    match = re.fullmatch(r"(.*?)(?:_(\d{1,4}))?", folder.name)
    assert match is not None  # the pattern matches every name
    return match.group(1), int(match.group(2) or 0)


def finished_tests(experiment: Path) -> list[Path]:
    """The finished test runs of an experiment folder (those with their aggregated statistics), oldest first.

    With named test settings, each setting's subfolder ``test_<ts>/<setting>/`` is one finished test.
    """
    found = [p.parent for p in Path(experiment).glob(f"{TEST_DIR_PREFIX}*/{TESTING_AGG_CSV}")]
    # A test run with named settings (testing.settings) keeps each setting's statistics in a subfolder.
    found += [p.parent for p in Path(experiment).glob(f"{TEST_DIR_PREFIX}*/*/{TESTING_AGG_CSV}")]
    return sorted(found, key=lambda p: (_test_order(p.parent), _natural(p.name))
                  if p.parent.name.startswith(TEST_DIR_PREFIX) and p.parent != Path(experiment)
                  else (_test_order(p), []))


def _natural(name: str) -> list[Any]:
    """A sort key that orders numbers by value: length_20 before length_100."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def newest_test(experiment: Path) -> Path | None:
    """The newest finished test run of an experiment folder, if any."""
    found = finished_tests(experiment)
    return found[-1] if found else None


def experiment_folders(root: Path) -> list[Path]:
    """Every experiment folder at or below ``root`` (one holding a training config or a run_info.json), sorted.

    Folders inside an experiment folder (its test runs) and attempts set aside by a grid are not experiments.
    """
    root = Path(root)
    candidates = sorted({p.parent for name in (TRAINING_CONFIG, RUN_INFO) for p in root.rglob(name)})
    found: list[Path] = []
    for folder in candidates:  # sorted: a folder comes right before the folders inside it
        if GRID_ABANDONED_DIR in folder.relative_to(root).parts:
            continue
        if found and found[-1] in folder.parents:
            continue
        found.append(folder)
    return found

"""Reading what grids and experiments leave on disk: configs, run records, best and test statistics, curves.

Everything read may be missing or partial (a grid still running, a failed experiment, an old
``run_info.json``, a CSV cut by a kill): such values stay empty rather than stopping the analysis.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.errors import BadInputError
from miprometheus.layout import (
    MANIFEST,
    RUN_INFO,
    TESTING_AGG_CSV,
    TESTING_CONFIG,
    TRAINING_CONFIG,
    TRAINING_CSV,
    VALIDATION_CSV,
    grid_config_file,
)
from miprometheus.statistics import read_csv
from miprometheus.workers.grid.folders import experiment_folders, finished_tests
from miprometheus.workers.grid.manifest import ExperimentRecord, Manifest

if TYPE_CHECKING:
    import pandas as pd

#: the key a named test setting's testing configuration holds its name under (``testing.settings.<name>``).
SETTING_KEY = "testing.setting"


@dataclass
class TestResult:
    """The newest test of one experiment in one test setting."""

    setting: dict[str, Any]  # the testing config's values that differ from the training config ({}: the standard)
    statistics: dict[str, Any]  # its aggregated row (testing_set_agg_statistics.csv)
    folder: Path


@dataclass
class CollectedExperiment:
    """One experiment read back for the analysis: everything known about it, before it becomes a row of the table.

    Not the manifest's :class:`ExperimentRecord` (what the grid runner keeps of a run), which it holds as ``record``.
    """

    id: str
    folder: Path | None  # the experiment folder, when it exists
    relative: str | None  # the folder as the table shows it: relative to the grid (or experiments) folder
    flat: dict[str, Any]  # its config as dotted key -> value
    run_info: dict[str, Any]
    tests: list[TestResult] = field(default_factory=list)
    record: ExperimentRecord | None = None  # its manifest entry; None outside a grid


@dataclass
class Collection:
    """The experiments of a grid folder (in the manifest's order) or of a plain experiments folder."""

    root: Path
    experiments: list[CollectedExperiment]
    manifest: Manifest | None  # None for a plain experiments folder


# ----------------------------------------------------------------------------------------------- values


def read_yaml(path: Path) -> Any:
    """A YAML file's content, or None when it is missing or broken (one bad file must not stop the analysis)."""
    from miprometheus.config.yaml_loader import read_config_text, safe_load

    try:
        return safe_load(read_config_text(path), str(path))
    except Exception:  # any error in one experiment's file leaves its values empty, the others are read
        return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content, {} when it is missing, broken or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def number(value: Any) -> Any:
    """A CSV cell as int/float when it is one, else the text (or None when empty)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def is_number(value: Any) -> bool:
    """Whether a value is a finite int or float (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a statistics CSV, numbers parsed; [] when it is missing or unreadable."""
    try:
        rows = read_csv(path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    # A row cut short by a kill has None for its missing cells and, when too long, a None key.
    return [{k: number(v) for k, v in row.items() if k is not None} for row in rows]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted key -> leaf value (a list stays one value, an empty mapping is a leaf)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def canonical(value: Any) -> str:
    """A comparable form of a config value: 10 and 10.0 are the same, lists compare by content."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return json.dumps(value, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ experiments


def _tests(folder: Path, trained: dict[str, Any]) -> list[TestResult]:
    """The newest test of each test setting of an experiment folder.

    A test's setting is what its testing configuration changed (``mip test DIR testing.problem.x=...``):
    the keys whose values differ from the training configuration's. Keys only a testing configuration
    has (``testing.checkpoint``, the weights tested) are no setting. Without either file, a test is the
    standard one.
    """
    newest: dict[str, TestResult] = {}
    for test in finished_tests(folder):  # oldest first: a newer test of a setting replaces an older one
        rows = read_rows(test / TESTING_AGG_CSV)
        if not rows:
            continue
        tested = read_yaml(test / TESTING_CONFIG) if trained else None
        tested = flatten(tested) if isinstance(tested, dict) else {}
        if isinstance(tested.get(SETTING_KEY), str):  # a named setting of testing.settings: its name says it all
            setting = {SETTING_KEY: tested[SETTING_KEY]}
        else:
            setting = {key: value for key, value in tested.items()
                       if key in trained and canonical(value) != canonical(trained[key])}
        newest[canonical(setting)] = TestResult(setting, rows[-1], test)
    return list(newest.values())


def read_experiment(folder: Path | None, identifier: str, relative: str | None, fallback_config: Path | None = None,
                    record: ExperimentRecord | None = None) -> CollectedExperiment:
    """One experiment: its effective config (else ``fallback_config``, the grid's), run record and tests."""
    exists = folder is not None and folder.is_dir()
    tree = read_yaml(folder / TRAINING_CONFIG) if exists else None
    trained = flatten(tree) if isinstance(tree, dict) else {}
    flat = trained
    if not trained and fallback_config is not None and fallback_config.is_file():
        # The experiment has not run (or its folder is gone): the grid's config for it still names its setting.
        tree = read_yaml(fallback_config)
        flat = flatten(tree) if isinstance(tree, dict) else {}
    run_info = read_json(folder / RUN_INFO) if exists else {}
    tests = _tests(folder, trained) if exists else []
    return CollectedExperiment(identifier, folder if exists else None, relative, dict(flat), run_info, tests, record)


def collect(path: Path) -> Collection:
    """Read a grid folder (``manifest.json``) or any folder of experiment folders."""
    root = Path(path)
    if (root / MANIFEST).is_file():
        manifest = Manifest.load(root)
        experiments = []
        for record in manifest.records:
            folder = root / record.folder if record.folder else None
            config = root / (record.config or grid_config_file(record.id))
            experiment = read_experiment(folder, record.id, record.folder, config, record)
            for key, value in (record.sweep or {}).items():
                experiment.flat.setdefault(key, value)
            experiments.append(experiment)
        return Collection(root, experiments, manifest)
    if not root.is_dir():
        raise BadInputError(f"{root} is neither a grid folder (with {MANIFEST}) nor a folder of experiments")
    experiments = []
    for folder in experiment_folders(root):
        relative = folder.relative_to(root).as_posix()
        experiments.append(read_experiment(folder, relative, relative))
    return Collection(root, experiments, None)


def read_curves(folder: Path | None) -> pd.DataFrame:
    """An experiment's learning curves: the rows of its training and validation CSVs, with a ``split`` column."""
    import pandas as pd

    rows = []
    if folder is not None:
        for split, name in (("training", TRAINING_CSV), ("validation", VALIDATION_CSV)):
            rows += [{"split": split, **row} for row in read_rows(folder / name)]
    return pd.DataFrame(rows, columns=None if rows else ["split", "episode"])

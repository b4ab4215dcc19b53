"""Assets built from a training split (vocabularies, answer sets): checked, saved, read back, given to every split.

Vocabularies and answer sets are built from the training split only (``Problem.build_assets``),
given to every split (``Problem.use_assets``) and saved in the experiment folder, so that testing
later, and transfer runs, use the training run's, never one built from their own data.
(One in-memory copy per file is :mod:`.shared_arrays`; dataset-defining randomness, :mod:`.dataset_seeding`.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from miprometheus.errors import DataError
from miprometheus.files import atomic_write_json
from miprometheus.layout import ASSETS

ASSETS_FORMAT = "miprometheus-assets"
ASSETS_VERSION = 1


def build_training_assets(problem: Any) -> dict[str, Any] | None:
    """The assets of a training problem (``problem.build_assets()``), checked to be JSON values."""
    assets = problem.build_assets()
    if assets is None:
        return None
    try:
        if not isinstance(assets, dict):
            raise TypeError(f"a dict, not {type(assets).__name__}")
        json.dumps(assets, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"problem {problem.name}: build_assets must return a dict of JSON values ({exc})") from None
    return assets


def apply_assets(problem: Any, assets: dict[str, Any] | None, missing: str = "") -> None:
    """Give a problem the training run's assets (``problem.use_assets``) before its definitions are read.

    A problem that declares ``uses_assets`` and gets none is a DataError, ``missing`` saying where they
    were looked for: its vocabulary is never built from a validation or test split's own data.
    """
    if assets is None:
        if getattr(problem, "uses_assets", False):
            raise DataError(f"problem {problem.name} needs the assets (vocabulary, answer set) built from its "
                            f"training split, and none were found{': ' + missing if missing else ''}")
        return
    problem.use_assets(assets)


def write_assets_file(path: Path, problem_name: str, assets: dict[str, Any]) -> None:
    """Save a training run's assets as JSON, atomically (``assets.json`` of the experiment folder)."""
    atomic_write_json(path, {"format": ASSETS_FORMAT, "version": ASSETS_VERSION, "problem": problem_name,
                             "assets": assets})


def read_assets_file(path: Path) -> dict[str, Any] | None:
    """The assets saved by :func:`write_assets_file`; None when there is no such file; DataError if malformed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the assets file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != ASSETS_FORMAT or not isinstance(data.get("assets"), dict):
        raise DataError(f"{path} is not an MI-Prometheus assets file (no '{ASSETS_FORMAT}' marker and 'assets')")
    if not isinstance(data.get("version"), int) or data["version"] > ASSETS_VERSION:
        raise DataError(f"{path}: assets format version {data.get('version')!r} is not supported")
    return data["assets"]


def assets_of_run(location: str, keys: tuple[str, ...], reader: str, run_kind: str, what: str) -> dict[str, Any]:
    """The assets another training run saved, for a problem's ``vocabulary_from`` (a transfer, a fine-tune).

    ``location`` is that run's experiment folder or its ``assets.json``. A DataError that names ``reader`` (the
    problem) when there is no such file (``run_kind``: which runs have one) or it lacks one of ``keys`` (``what``).
    """
    path = Path(os.path.expanduser(location))
    file = path / ASSETS if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{reader}: vocabulary_from {location}: no {ASSETS} there (an experiment folder of a "
                        f"{run_kind} training run, or its {ASSETS})")
    assets = read_assets_file(file)
    if not assets or any(key not in assets for key in keys):
        raise DataError(f"{reader}: {file} holds no {what}")
    return dict(assets)


__all__ = ["apply_assets", "assets_of_run", "build_training_assets", "read_assets_file", "write_assets_file"]

"""Dataset assets shared across splits and runs: in-memory copies, dataset seeds, training-split assets.

The training, validation and test splits of an experiment often read the same file (the shared
MNIST test set is split by index into all three). :func:`shared_asset` loads each file once per
process and hands every split the same object. The cache holds its entries weakly: when the last
problem using a file is gone (a finished run in a notebook, a test), the memory is freed.

Vocabularies and answer sets are built from the training split only (``Problem.build_assets``),
given to every split (``Problem.use_assets``) and saved in the experiment folder, so that testing
later, and transfer runs, use the training run's, never one built from their own data.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import torch

from miprometheus.errors import DataError
from miprometheus.files import atomic_write_json
from miprometheus.layout import ASSETS
from miprometheus.seeding import derive_seed

T = TypeVar("T")

_cache: weakref.WeakValueDictionary[tuple[Hashable, ...], Any] = weakref.WeakValueDictionary()
# Held while loading, so that two threads asking for the same file (two experiments in one process)
# load it once; loading a file takes a fraction of a second, so one lock for all files is enough.
_lock = threading.Lock()


class Arrays(dict):
    """A dict of arrays that the weak cache can hold (a plain dict cannot be weakly referenced)."""


def file_key(path: Path | str) -> tuple[str, int, int]:
    """What identifies a file's content in the cache: its resolved path, size and modification time.

    A file replaced or rewritten in place gets a new key, so a stale copy is never served.
    """
    resolved = Path(os.path.expanduser(str(path))).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise DataError(f"cannot read {resolved}: {exc.strerror or exc}") from None
    return str(resolved), stat.st_size, stat.st_mtime_ns


def shared_asset(path: Path | str, load: Callable[[Path], T], *key: Hashable) -> T:
    """The object ``load(path)`` returns, loaded once per process for every caller asking for the same file.

    ``key`` distinguishes different things loaded from one file; the loader itself is part of the key
    too: pass a module-level function (the same object at every call), not a lambda made per call.
    The returned object must support weak references (tensors, NumPy arrays, :class:`Arrays`): keep a
    reference to it, not only to a view of it, for as long as it is used — the cache forgets an object
    as soon as nobody holds it. Every caller gets the same object: treat it as read-only (transform
    copies of batches, never the shared data in place).
    """
    path = Path(os.path.expanduser(str(path)))
    cache_key = (*file_key(path), load, *key)
    with _lock:
        value = _cache.get(cache_key)
        if value is None:
            value = load(path)
            try:
                _cache[cache_key] = value
            except TypeError:
                raise TypeError(f"shared_asset: {type(value).__name__} cannot be weakly referenced; return a "
                                "tensor, an array or an Arrays dict from the loader") from None
    return value


def cached_count() -> int:
    """How many loaded files the process-wide cache holds now (for tests and benchmarks)."""
    return len(_cache)


def dataset_generator(dataset_seed: int, *names: Any) -> torch.Generator:
    """A generator for randomness that defines a dataset's content (a pixel permutation, generated scenes).

    Seeded from the problem's own ``dataset_seed`` parameter and ``names`` (what it is for, e.g.
    ``"permutation"``), never from the run's seed: two runs with different seeds see the same data,
    and a problem's ``self.generator`` (the per-run sample randomness) is left untouched.
    """
    generator = torch.Generator()
    generator.manual_seed(derive_seed(int(dataset_seed), "dataset", *names))
    return generator


# --- assets built from the training split (vocabularies, answer sets) ------------------------------------
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


__all__ = ["Arrays", "apply_assets", "assets_of_run", "build_training_assets", "cached_count", "dataset_generator",
           "file_key", "read_assets_file", "shared_asset", "write_assets_file"]

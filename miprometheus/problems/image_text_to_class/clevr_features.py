"""The file format of pre-extracted image features (one file per split): written by ``mip extract-features``,
read, memory-mapped, by CLEVR with ``images: features``.

A split's features are two files side by side:

* ``<split>.npy``: a NumPy array ``[N, C, H, W]`` (float16 by default, or float32), row ``i`` the features of
  the ``i``-th image of the sidecar's ``image_filenames``; read with ``np.load(mmap_mode="r")``, so a 28 GB
  training split (70,000 x 1024 x 14 x 14 in float16) costs no memory until a batch reads its rows;
* ``<split>.json``: the sidecar: ``format`` (``miprometheus-image-features``), ``version``, ``dataset``,
  ``split``, ``image_folder``, ``image_filenames`` (in row order), ``shape``, ``dtype`` and ``extractor``
  (architecture, last layer, image size, resize, normalisation, the weights file and its SHA-256, or
  ``random_weights``), then ``created`` and ``seconds``.

Writing is atomic: rows go to ``.<split>.npy.partial`` (with ``.<split>.progress.json`` saying how many rows
are done and for which settings, so a stopped extraction resumes), and only when every row is written is the
old sidecar removed, the array renamed into place and the new sidecar written last. A file without its sidecar
is an unfinished extraction, and :func:`read_features` refuses it, as it refuses a sidecar that does not
describe its array (shape, dtype, number of images).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miprometheus.errors import DataError
from miprometheus.files import atomic_write_json

FORMAT = "miprometheus-image-features"
VERSION = 1
DTYPES = ("float16", "float32")
#: the sidecar keys that say what a file holds (not when or how fast it was written)
CONTENT_KEYS = ("format", "version", "dataset", "split", "image_folder", "image_filenames", "shape", "dtype",
                "extractor")


def sidecar_path(array_path: Path | str) -> Path:
    """The sidecar of a feature array: ``train.npy`` -> ``train.json``."""
    return Path(array_path).with_suffix(".json")


def partial_path(array_path: Path | str) -> Path:
    """Where the rows of an unfinished extraction are written: ``.train.npy.partial``."""
    path = Path(array_path)
    return path.with_name(f".{path.name}.partial")


def progress_path(array_path: Path | str) -> Path:
    """How far an unfinished extraction got: ``.train.progress.json``."""
    path = Path(array_path)
    return path.with_name(f".{path.stem}.progress.json")


def content_hash(meta: dict[str, Any]) -> str:
    """The SHA-256 of what a sidecar says the file holds (its :data:`CONTENT_KEYS`)."""
    content = {key: meta.get(key) for key in CONTENT_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class FeatureFile:
    """A split's features as read: the sidecar's description and the memory-mapped array."""

    path: Path
    meta: dict[str, Any]
    array: np.ndarray

    @property
    def image_filenames(self) -> list[str]:
        return list(self.meta["image_filenames"])

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image's features."""
        _, channels, height, width = self.meta["shape"]
        return int(channels), int(height), int(width)

    @property
    def extractor(self) -> dict[str, Any]:
        return dict(self.meta["extractor"])


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: the feature sidecar is not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the feature sidecar {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a feature sidecar of MI-Prometheus (no format '{FORMAT}')")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise DataError(f"{path}: feature file version {version!r} is not supported (this MI-Prometheus reads "
                        f"version {VERSION}); extract the features again with mip extract-features")
    shape = meta.get("shape")
    names = meta.get("image_filenames")
    checks = {
        "shape": isinstance(shape, list) and len(shape) == 4 and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape),
        "dtype": meta.get("dtype") in DTYPES,
        "image_filenames": isinstance(names, list) and all(isinstance(n, str) for n in names),
        "split": isinstance(meta.get("split"), str),
        "dataset": isinstance(meta.get("dataset"), str),
        "extractor": isinstance(meta.get("extractor"), dict),
    }
    wrong = [key for key, good in checks.items() if not good]
    if wrong:
        raise DataError(f"{path}: the feature sidecar has no valid {', '.join(wrong)} (shape: 4 positive integers "
                        f"[N, C, H, W]; dtype: {' or '.join(DTYPES)}; image_filenames: a list of file names)")
    if len(names) != shape[0]:
        raise DataError(f"{path}: the sidecar lists {len(names)} images but its shape says {shape[0]} rows")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: the sidecar lists an image twice")
    return meta


def read_features(array_path: Path | str) -> FeatureFile:
    """Open a split's feature file (memory-mapped) after checking it against its sidecar; DataError otherwise."""
    path = Path(os.path.expanduser(str(array_path)))
    sidecar = sidecar_path(path)
    if not path.is_file():
        if partial_path(path).exists():
            raise DataError(f"feature file {path} is not finished: an extraction stopped before writing every row "
                            f"({partial_path(path).name} is there). Run the same mip extract-features command "
                            "again: it resumes")
        raise DataError(f"feature file not found: {path}. Write it with mip extract-features "
                        "(e.g. configs/vqa/extract_features_clevr.yaml), or set features_file")
    if not sidecar.is_file():
        raise DataError(f"feature file {path} has no sidecar {sidecar.name}: the extraction did not finish (or the "
                        "file was not written by mip extract-features). Run mip extract-features again")
    meta = _read_sidecar(sidecar)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read the feature file {path}: {exc} (corrupt or truncated; extract it again)"
                        ) from None
    if tuple(array.shape) != tuple(meta["shape"]) or str(array.dtype) != meta["dtype"]:
        raise DataError(f"feature file {path} holds {list(array.shape)} {array.dtype} but its sidecar {sidecar.name} "
                        f"says {meta['shape']} {meta['dtype']}: they do not belong together; extract it again")
    return FeatureFile(path, meta, array)


class FeatureWriter:
    """Writes one split's feature file row by row; resumable, and atomic as a whole (see the module doc).

    ``meta`` is the sidecar without ``created``/``seconds``. Use: ``start()`` (rows already done by a stopped
    run with the same content, else 0), ``write(row, values)``, ``checkpoint(rows_done)`` now and then, and
    ``finish(extra)`` once every row is written.
    """

    def __init__(self, array_path: Path | str, meta: dict[str, Any]) -> None:
        self.path = Path(array_path)
        self.meta = dict(meta)
        if self.meta.get("dtype") not in DTYPES:
            raise ValueError(f"feature dtype must be one of {DTYPES}, got {self.meta.get('dtype')!r}")
        self.shape = tuple(int(s) for s in self.meta["shape"])
        self.hash = content_hash(self.meta)
        self.array: np.ndarray | None = None

    def up_to_date(self) -> bool:
        """Whether a finished file with exactly this content is already there."""
        if not self.path.is_file() or not sidecar_path(self.path).is_file():
            return False
        try:
            return content_hash(read_features(self.path).meta) == self.hash
        except DataError:
            return False

    def start(self) -> int:
        """Open the partial array; the number of rows a stopped extraction of the same content already wrote."""
        partial, progress = partial_path(self.path), progress_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        done = 0
        with contextlib.suppress(OSError, ValueError, json.JSONDecodeError):
            state = json.loads(progress.read_text(encoding="utf-8"))
            if state.get("content") == self.hash and partial.is_file():
                array = np.lib.format.open_memmap(partial, mode="r+")
                if tuple(array.shape) == self.shape and str(array.dtype) == self.meta["dtype"]:
                    self.array, done = array, int(state["rows_done"])
        if self.array is None:
            progress.unlink(missing_ok=True)
            self.array = np.lib.format.open_memmap(partial, mode="w+", dtype=self.meta["dtype"], shape=self.shape)
        return done

    def write(self, row: int, values: np.ndarray) -> None:
        """Rows ``row`` .. ``row + len(values) - 1``."""
        assert self.array is not None, "start() first"
        self.array[row:row + len(values)] = values

    def checkpoint(self, rows_done: int) -> None:
        """Make the first ``rows_done`` rows durable and record them, so that a stopped run resumes after them."""
        assert self.array is not None, "start() first"
        self.array.flush()
        atomic_write_json(progress_path(self.path), {"format": FORMAT, "content": self.hash,
                                                      "rows_done": int(rows_done)})

    def finish(self, extra: dict[str, Any] | None = None) -> Path:
        """Put the finished file in place: the sidecar is written last, so a kill leaves no file that looks complete."""
        assert self.array is not None, "start() first"
        self.array.flush()
        del self.array
        self.array = None
        partial = partial_path(self.path)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        sidecar = sidecar_path(self.path)
        sidecar.unlink(missing_ok=True)  # from here on, an interrupted finish leaves an array without a sidecar
        os.replace(partial, self.path)
        atomic_write_json(sidecar, {**self.meta, **(extra or {})})
        progress_path(self.path).unlink(missing_ok=True)
        return self.path


__all__ = ["DTYPES", "FORMAT", "VERSION", "FeatureFile", "FeatureWriter", "content_hash", "partial_path",
           "progress_path", "read_features", "sidecar_path"]

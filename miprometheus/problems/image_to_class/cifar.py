"""CIFAR-10 and CIFAR-100: classify 32x32 colour images, from the official python-version distribution.

The batches are read from ``<data_folder>/cifar-10-batches-py/`` when extracted, else directly from
``<data_folder>/cifar-10-python.tar.gz`` (no extraction); CIFAR-100 likewise from
``cifar-100-python/`` or ``cifar-100-python.tar.gz``. A missing archive is downloaded when
``download`` is set (official URL, md5 verified, written atomically). The pickles are read safely
(:mod:`cifar_format`): a file naming any global but NumPy's array rebuilders is refused, never run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from miprometheus.errors import ConfigError, DataError
from miprometheus.files import atomic_write
from miprometheus.params import param
from miprometheus.problems.image_to_class.cifar_format import IMAGE_SIZE, parse_batch, parse_meta, read_members
from miprometheus.problems.image_to_class.image_problem import ImageParams, ImageProblem
from miprometheus.problems.shared_arrays import Arrays, file_key, shared_asset
from miprometheus.registry import register_problem

DOWNLOAD_TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One official CIFAR distribution: its archive, folder, files and label keys."""

    title: str
    archive: str
    folder: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    #: label key in the batch files -> (key of its names in the meta file, number of classes).
    labels: dict[str, tuple[str, int]]


CIFAR10_FILES = Distribution(
    "CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
    {"labels": ("label_names", 10)})
CIFAR100_FILES = Distribution(
    "CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
    ("train",), ("test",), "meta",
    {"fine_labels": ("fine_label_names", 100), "coarse_labels": ("coarse_label_names", 20)})


def fetch(url: str) -> bytes:
    """Download one URL into memory (module-level so that tests can replace it)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download_archive(dist: Distribution, root: Path) -> Path:
    """Download the official archive into ``root``, verifying its md5; written atomically. DataError on failure."""
    target = root / dist.archive
    try:
        payload = fetch(dist.url)
    except Exception as exc:  # any network failure (URLError, timeout, HTTP error)
        raise DataError(f"could not download {dist.url}: {exc}") from None
    digest = hashlib.md5(payload).hexdigest()
    if digest != dist.md5:
        raise DataError(f"the download of {dist.url} has md5 {digest}, not the official {dist.md5}: not saved")
    try:
        atomic_write(target, lambda handle: handle.write(payload), mode="wb")
    except OSError as exc:
        raise DataError(f"cannot write the downloaded {dist.title} archive {target}: {exc}") from None
    return target


def _load_split(path: Path, dist: Distribution, split: str) -> Arrays:
    """All batch files of a split, from the folder or archive ``path`` is in: images, labels, class names."""
    root = path.parent.parent if path.parent.name == dist.folder else path.parent
    names = dist.train_files if split == "train" else dist.test_files
    raw, where = read_members(root, dist.folder, dist.archive, [*names, dist.meta_file])

    def source(name: str) -> str:
        return f"{where}/{name}" if where.endswith(dist.folder) else f"{where}:{name}"

    label_keys = {key: classes for key, (_, classes) in dist.labels.items()}
    parts = [parse_batch(raw.pop(name), source(name), label_keys) for name in names]
    arrays = Arrays()
    # One copy, as [N, 3, 32, 32] (the rows are channel-major); the parsed arrays may be read-only views.
    rows = np.concatenate([part["data"] for part in parts])
    arrays["images"] = torch.from_numpy(rows.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
    for key in dist.labels:
        arrays[key] = torch.from_numpy(np.concatenate([part[key] for part in parts]).astype(np.int64))
    name_keys = {names_key: classes for names_key, classes in dist.labels.values()}
    arrays.update(parse_meta(raw[dist.meta_file], source(dist.meta_file), name_keys))
    return arrays


# Module-level loaders (the same object at every call): shared_asset keys on them.
_LOADERS = {(dist.title, split): functools.partial(_load_split, dist=dist, split=split)
            for dist in (CIFAR10_FILES, CIFAR100_FILES) for split in ("train", "test")}


class CIFARBase(ImageProblem):
    """Common loading of the CIFAR problems (see CIFAR10 and CIFAR100)."""

    distribution: Distribution
    label_key: str

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.check_resize(params.resize)  # a bad value is reported before any file is read
        self.root = Path(os.path.expanduser(str(params.data_folder)))
        split = "train" if params.use_train_data else "test"
        path, keys = self._locate(split)
        # One copy per file (or archive) in the process, whatever the number of splits reading it.
        self.arrays = shared_asset(path, _LOADERS[(self.distribution.title, split)], *keys)
        self.images = self.arrays["images"]
        self.targets = self.arrays[self.label_key]
        self.setup_images(self.arrays[self.distribution.labels[self.label_key][0]], "RGB images")

    def _locate(self, split: str) -> tuple[Path, tuple[Any, ...]]:
        """The path the split is read from (a batch file of the folder, or the archive) and extra cache keys."""
        dist = self.distribution
        folder = self.root / dist.folder
        if folder.is_dir():
            names = [*(dist.train_files if split == "train" else dist.test_files), dist.meta_file]
            missing = [name for name in names if not (folder / name).is_file()]
            if missing:
                raise DataError(f"{dist.title} folder {folder} lacks {', '.join(missing)}: place the files of the "
                                f"official archive there, or remove the folder to read {self.root / dist.archive}")
            # Every file of the split is part of the key: rewriting any of them gives a new copy.
            return folder / names[0], tuple(file_key(folder / name) for name in names[1:])
        archive = self.root / dist.archive
        if archive.is_file():
            return archive, ()
        why = "downloading is disabled (download: false)"
        if self.params.download:
            try:
                return download_archive(dist, self.root), ()
            except DataError as exc:
                why = f"the download failed: {exc}"
        raise DataError(f"{dist.title} data not found: expected {archive} or the extracted folder {folder}; {why}. "
                        f"Download {dist.url} (md5 {dist.md5}) and place it at {archive}")


@register_problem
class CIFAR10(CIFARBase):
    """Classify 32x32 colour images into 10 classes (airplane, automobile, ..., truck); the official CIFAR-10.

    Reads ``cifar-10-batches-py/`` or, without extracting it, ``cifar-10-python.tar.gz`` in
    ``data_folder`` (downloaded, md5-checked, when missing and ``download`` is set). Batches hold
    ``images`` [B, 3, H, W] float32 (in [0, 1], or normalised with the published per-channel
    mean/std), ``targets`` [B] int64 and ``targets_label`` (class names from ``batches.meta``).
    50,000 training images (``use_train_data: true``), 10,000 test images. Pixels stay ``uint8`` in
    memory (150 MB for the training set, shared by every split), converted per batch. Training-only
    augmentation: ``random_crop_padding: 4`` and ``random_horizontal_flip: true`` (the usual recipe).
    """

    distribution = CIFAR10_FILES
    label_key = "labels"
    published_mean = (0.4914, 0.4822, 0.4465)
    published_std = (0.2470, 0.2435, 0.2616)

    @dataclasses.dataclass(kw_only=True)
    class Params(ImageParams):
        """Parameters of the CIFAR10 problem."""

        data_folder: str = param(doc="folder holding cifar-10-python.tar.gz or the extracted cifar-10-batches-py/; "
                                     "downloads go there", path=True)
        use_train_data: bool = param(True, "use the 50,000 training images (False: the 10,000 test images)")
        download: bool = param(True, "download the archive when missing (official URL, md5-verified)")


@register_problem
class CIFAR100(CIFARBase):
    """Classify 32x32 colour images into 100 fine classes (or 20 coarse superclasses); the official CIFAR-100.

    Reads ``cifar-100-python/`` or ``cifar-100-python.tar.gz`` in ``data_folder`` (downloaded,
    md5-checked, when missing and ``download`` is set). ``label_type: fine`` (100 classes) or
    ``coarse`` (20), names from the ``meta`` file. Batches as CIFAR10: ``images`` [B, 3, H, W]
    float32, ``targets`` [B] int64, ``targets_label``. 50,000 training and 10,000 test images.
    """

    distribution = CIFAR100_FILES
    published_mean = (0.5071, 0.4865, 0.4409)
    published_std = (0.2673, 0.2564, 0.2762)

    @dataclasses.dataclass(kw_only=True)
    class Params(ImageParams):
        """Parameters of the CIFAR100 problem."""

        data_folder: str = param(doc="folder holding cifar-100-python.tar.gz or the extracted cifar-100-python/; "
                                     "downloads go there", path=True)
        use_train_data: bool = param(True, "use the 50,000 training images (False: the 10,000 test images)")
        download: bool = param(True, "download the archive when missing (official URL, md5-verified)")
        label_type: Literal["fine", "coarse"] = param("fine", "fine: 100 classes; coarse: the 20 superclasses")

    def __init__(self, params: Params) -> None:
        if params.label_type not in ("fine", "coarse"):
            raise ConfigError(f"problem {type(self).__name__}: label_type must be fine or coarse, "
                              f"got {params.label_type!r}")
        self.label_key = f"{params.label_type}_labels"
        super().__init__(params)


__all__ = ["CIFAR10", "CIFAR100", "CIFAR100_FILES", "CIFAR10_FILES", "download_archive", "fetch"]

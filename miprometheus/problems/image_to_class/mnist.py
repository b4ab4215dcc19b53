"""MNIST: classify 28x28 grey-scale images of handwritten digits into 10 classes.

The official IDX files (gzip-compressed or plain) are read directly, from ``<data_folder>/``,
``<data_folder>/raw/`` or ``<data_folder>/MNIST/raw/``. Missing files are downloaded into
``<data_folder>/raw/`` when ``download`` is set, with the official md5 of each ``.gz`` verified.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import torch

from miprometheus.errors import DataError
from miprometheus.params import param
from miprometheus.problems.image_to_class.image_problem import ImageParams, ImageProblem
from miprometheus.problems.image_transforms import MNIST_MEAN, MNIST_STD
from miprometheus.problems.shared_arrays import shared_asset
from miprometheus.registry import register_problem

#: official file names (without ``.gz``) of the images and labels of each split.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: md5 of the official ``.gz`` files; checked on downloads only (a user's own copies may be re-compressed).
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: download locations, tried in order; all serve the same file names.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
LABEL_NAMES = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")

IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
DOWNLOAD_TIMEOUT_S = 60


def candidate_folders(root: Path) -> list[Path]:
    """The folders searched for the IDX files, in order: the root, then the torchvision layouts."""
    return [root, root / "raw", root / "MNIST" / "raw"]


def find_file(root: Path, name: str) -> Path | None:
    """The first existing copy of an IDX file (plain or ``.gz``) in the candidate folders, or None."""
    for folder in candidate_folders(root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


#: the most bytes of pixels or labels an IDX file may announce (MNIST's 60,000 training digits: 47 MB); a larger
#: header is refused before anything is read, so a hostile header costs no memory
MAX_IDX_BYTES = 2 << 30
#: bytes decompressed at a time: a file holding more than its header announces is refused within one chunk
READ_CHUNK_BYTES = 1 << 22


def _read_idx(path: Path, what: str, magic: int, names: tuple[str, ...]) -> tuple[tuple[int, ...], bytearray]:
    """The dimensions an IDX file's header announces (``names``: what each counts) and its data, validated.

    gzip is recognised by its magic bytes, not the name. The header is read and checked first: the right
    magic number, every dimension at least 1, at most MAX_IDX_BYTES in all. The data is then decompressed
    a chunk at a time up to the size the header announces, and one byte more: a file holding more (a gzip
    bomb of zeros behind a valid header) or less (truncated) is a DataError after a bounded read.
    """
    header_size = 4 + 4 * len(names)
    try:
        with open(path, "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if raw.read(2) == b"\x1f\x8b" else raw
            raw.seek(0)
            header = stream.read(header_size)
            if len(header) < header_size:
                raise DataError(f"MNIST {what} file {path} is too short ({len(header)} bytes) for its "
                                f"{header_size}-byte IDX header")
            found, *dims = struct.unpack(f">{len(names) + 1}I", header)
            if found != magic:
                raise DataError(f"MNIST {what} file {path} has magic number {found}, expected {magic} "
                                f"(not an IDX {what} file, or corrupt)")
            announced = " of ".join(filter(None, [f"{dims[0]} {names[0]}", "x".join(map(str, dims[1:]))]))
            if 0 in dims:
                raise DataError(f"MNIST {what} file {path} announces {announced}: every dimension of an IDX header "
                                "must be at least 1 (the file is corrupt, or not the data it claims)")
            expected = math.prod(dims)
            if expected > MAX_IDX_BYTES:
                raise DataError(f"MNIST {what} file {path} announces {announced} ({expected:,} bytes), more than the "
                                f"{MAX_IDX_BYTES:,} bytes an IDX file may hold here")
            data = bytearray()
            while len(data) <= expected:
                chunk = stream.read(min(READ_CHUNK_BYTES, expected + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read MNIST file {path}: {exc}") from exc
    if len(data) > expected:
        raise DataError(f"MNIST {what} file {path} holds more data than its header announces ({announced}: "
                        f"{header_size + expected:,} bytes); reading stopped there: the file is corrupt or hostile")
    if len(data) < expected:
        raise DataError(f"MNIST {what} file {path} holds {header_size + len(data):,} bytes, but its header "
                        f"({announced}) requires {header_size + expected:,}: the file is truncated or corrupt")
    return tuple(dims), data


def read_idx_images(path: Path) -> torch.Tensor:
    """Read an IDX image file (magic 2051) into a uint8 tensor ``[N, rows, cols]``; DataError if malformed."""
    (count, rows, cols), data = _read_idx(path, "image", IMAGES_MAGIC, ("images", "rows", "cols"))
    return torch.frombuffer(data, dtype=torch.uint8).view(count, rows, cols)


def read_idx_labels(path: Path) -> torch.Tensor:
    """Read an IDX label file (magic 2049) into an int64 tensor ``[N]``; DataError if malformed."""
    _, data = _read_idx(path, "label", LABELS_MAGIC, ("labels",))
    labels = torch.frombuffer(data, dtype=torch.uint8).long()
    if int(labels.max()) > 9:
        raise DataError(f"MNIST label file {path} holds label {int(labels.max())}; labels must be 0..9")
    return labels


def load_images(path: Path) -> torch.Tensor:
    """An IDX image file as ``uint8`` [N, 1, rows, cols] (the shape every split shares)."""
    return read_idx_images(path).unsqueeze(1)


def fetch(url: str) -> bytes:
    """Download one URL into memory (module-level so that tests can replace it)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download_file(gz_name: str, folder: Path) -> Path:
    """Download an official ``.gz`` file into ``folder``, verifying its md5; written atomically.

    Tries every mirror; raises DataError describing each failure when none delivers a valid file.
    """
    failures = []
    for mirror in MIRRORS:
        url = mirror + gz_name
        try:
            payload = fetch(url)
        except Exception as exc:  # any network failure (URLError, timeout, HTTP error): try the next mirror
            failures.append(f"{url}: {exc}")
            continue
        digest = hashlib.md5(payload).hexdigest()
        if digest != GZ_MD5[gz_name]:
            failures.append(f"{url}: md5 {digest} does not match the official {GZ_MD5[gz_name]}")
            continue
        target = folder / gz_name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # A temporary file in the same folder, then os.replace: a crash never leaves a partial file.
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{gz_name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(payload)
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DataError(f"cannot write the downloaded MNIST file {target}: {exc}") from exc
        return target
    raise DataError(f"could not download {gz_name}:\n  " + "\n  ".join(failures))


@register_problem
class MNIST(ImageProblem):
    """Classify 28x28 handwritten digits (0-9); images are float32 in [0, 1], normalised on request.

    Batches hold ``images`` [B, 1, H, W] float32 (3 channels with ``grey_to_rgb``), ``targets`` [B]
    int64 and ``targets_label`` (list of class names such as "Seven"). The train split has 60,000
    images, the test split 10,000. The split keeps the file's pixels as ``uint8`` [N, 1, 28, 28]
    (``self.images``), one copy shared by every split that reads the same file; each batch is converted
    (resized, replicated to RGB, augmented, normalised, as configured) when made.
    """

    published_mean = MNIST_MEAN
    published_std = MNIST_STD

    @dataclasses.dataclass(kw_only=True)
    class Params(ImageParams):
        """Parameters of the MNIST problem."""

        data_folder: str = param(doc="folder holding the IDX files (itself, raw/ or MNIST/raw/); downloads go "
                                     "to <data_folder>/raw/", path=True)
        use_train_data: bool = param(True, "use the 60,000 training images (False: the 10,000 test images)")
        download: bool = param(True, "download missing files from the official mirrors (md5-verified)")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.check_resize(params.resize)  # a bad value is reported before any file is read
        self.root = Path(os.path.expanduser(str(params.data_folder)))
        split = "train" if params.use_train_data else "test"
        images_path, labels_path = self._locate(split)

        # One copy per file in the process, whatever the number of splits reading it (DESIGN §15).
        self.images = shared_asset(images_path, load_images)
        self.targets = shared_asset(labels_path, read_idx_labels)
        if self.images.shape[0] != self.targets.shape[0]:
            raise DataError(f"MNIST files disagree: {images_path} holds {self.images.shape[0]} images but "
                            f"{labels_path} holds {self.targets.shape[0]} labels")
        self.setup_images(LABEL_NAMES, "grey-scale images")

    def _locate(self, split: str) -> tuple[Path, Path]:
        """The paths of the split's image and label files, downloading missing ones if allowed."""
        names = SPLIT_FILES[split]
        found = {name: find_file(self.root, name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            download_folder = self.root / "raw"
            why = "downloading is disabled (download: false)"
            if self.params.download:
                try:
                    for name in missing:
                        found[name] = download_file(f"{name}.gz", download_folder)
                    missing = []
                except DataError as exc:
                    why = f"the download failed: {exc}"
            if missing:
                searched = ", ".join(str(folder) for folder in candidate_folders(self.root))
                expected = ", ".join(f"{name}.gz (or {name})" for name in missing)
                raise DataError(
                    f"MNIST {split} data not found: expected {expected} in one of: {searched}; {why}. "
                    f"Download the official files from {MIRRORS[0]} (or another MNIST mirror) and place them, "
                    f"gzip-compressed or not, in {download_folder}")
        return found[names[0]], found[names[1]]

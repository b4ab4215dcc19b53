"""The official CIFAR-10 / CIFAR-100 "python version" format: a safe reader and an exact writer.

The official batches are Python 2 ``cPickle`` dicts (protocol 2) of byte strings, lists of ints and one
``numpy`` uint8 array ``data`` of shape (N, 3072), each row one 32x32 image, channel-major (1024 red,
1024 green, 1024 blue values, each plane row-major). Unpickling an arbitrary file can execute code, so
:func:`safe_loads` allows only the few numpy globals an array needs and refuses every other global
with a :class:`~miprometheus.errors.DataError`, before anything is called. The reader then checks the
structure (shapes, dtypes, label ranges) and accepts ``str`` and ``bytes`` keys alike.

The writer (:func:`write_cifar10`, :func:`write_cifar100`) produces files that the official loading
recipes read unchanged: byte strings use the Python 2 string opcodes, so ``pickle.load(f,
encoding="bytes")`` gives ``bytes`` keys and ``encoding="latin1"`` gives ``str`` keys, exactly as with
the files from the Toronto site; the numpy global is written as ``numpy.core.multiarray`` so that
NumPy 1.x and 2.x both load it. Use it to convert your own images, or to build test and benchmark
sets. This module needs numpy only (no torch).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miprometheus.errors import DataError

#: class names in ``batches.meta`` of the official CIFAR-10 archive.
CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_META = "batches.meta"

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR100_TRAIN_FILES = ("train",)
CIFAR100_TEST_FILES = ("test",)
CIFAR100_META = "meta"

IMAGE_SIZE = 32
ROW_LENGTH = 3 * IMAGE_SIZE * IMAGE_SIZE  # 3072 values per image

#: the most bytes one file of a distribution may hold (the official CIFAR-100 ``train``: 155 MB); a larger one is
#: refused before it is read, from its size in the folder or in the archive's member header
MAX_MEMBER_BYTES = 2 << 30
#: how far into a tar.gz's content a member is looked for (the official archives: 180 MB): a stream of zeros
#: behind small headers is refused there rather than decompressed to its end
MAX_ARCHIVE_BYTES = 8 << 30

# --- safe reading -----------------------------------------------------------------------------------


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for ``bytes``; only latin-1, nothing else."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for a str and latin-1, got {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: what rebuilding a numpy array (and bytes) needs."""
    try:  # NumPy 2.x
        from numpy._core import multiarray, numeric
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Both spellings of the module, whatever the NumPy installed: files written under NumPy 1.x name
    # numpy.core, files written under 2.x numpy._core. Mapped directly: importing numpy.core warns on 2.x.
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the allowed numpy globals; any other global is refused."""

    def __init__(self, file: io.BytesIO, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            # Raised while reading the opcode that names the global: nothing has been called yet.
            raise DataError(f"CIFAR file {self.source} refers to the Python global {module}.{name}: refused "
                            "(a CIFAR batch holds only dicts, lists, strings and numpy arrays; the file is not "
                            "a CIFAR batch, or it is corrupt or malicious, and it was not executed)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"CIFAR file {self.source} holds a persistent id: refused (not a CIFAR batch)")


def safe_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` allowing only numpy arrays, dtypes and plain Python values; DataError otherwise.

    ``source`` names the file in the messages. Python 2 byte strings come back as ``str`` (latin-1), as
    ``pickle.load(f, encoding="latin1")`` returns them; byte strings of Python 3 pickles stay ``bytes``.
    """
    try:
        return _SafeUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"CIFAR file {source} is not a CIFAR batch: its pickle is nested too deeply") from None
    except Exception as exc:  # UnpicklingError, EOFError (truncated), ValueError/TypeError from numpy, ...
        cause = "it ends early (truncated)" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"CIFAR file {source} cannot be unpickled: {cause}") from None


def _text(value: Any) -> Any:
    """A key or name as ``str``: bytes are decoded as latin-1 (Python 2 strings), anything else is kept."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _str_keys(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR file {source} holds a {type(obj).__name__}, expected a dict")
    return {_text(key): value for key, value in obj.items()}


def _labels(value: Any, key: str, count: int, num_classes: int, source: str) -> np.ndarray:
    """A label list (or integer array) as int64 [count], each in 0..num_classes-1; DataError otherwise."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise DataError(f"CIFAR file {source}: {key!r} is a {type(value).__name__}, expected a list of ints")
    if isinstance(value, np.ndarray):
        labels = value
    elif all(type(item) is int for item in value):  # bool is refused too (type, not isinstance)
        labels = np.asarray(value, dtype=np.int64) if value else np.empty(0, dtype=np.int64)
    else:
        bad = next(item for item in value if type(item) is not int)
        raise DataError(f"CIFAR file {source}: {key!r} holds {bad!r} ({type(bad).__name__}), expected ints")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"CIFAR file {source}: {key!r} must be a flat list of ints, got an array of "
                        f"{labels.dtype} and shape {labels.shape}")
    if labels.shape[0] != count:
        raise DataError(f"CIFAR file {source}: {key!r} holds {labels.shape[0]} labels but 'data' holds {count} "
                        "images")
    if count and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"CIFAR file {source}: {key!r} holds label {bad}, out of range 0..{num_classes - 1}")
    return labels.astype(np.int64, copy=False)


def parse_batch(data: bytes, source: str, label_keys: dict[str, int]) -> dict[str, np.ndarray]:
    """A CIFAR batch file's content, validated: ``data`` uint8 (N, 3072) and each label key as int64 [N].

    ``label_keys`` maps each required label key to its number of classes, e.g. ``{"labels": 10}`` for
    CIFAR-10 or ``{"fine_labels": 100, "coarse_labels": 20}`` for CIFAR-100. Keys may be str or bytes.
    """
    batch = _str_keys(safe_loads(data, source), source)
    if "data" not in batch:
        raise DataError(f"CIFAR file {source} has no 'data' entry (keys: {sorted(map(str, batch))})")
    pixels = batch["data"]
    if not isinstance(pixels, np.ndarray):
        raise DataError(f"CIFAR file {source}: 'data' is a {type(pixels).__name__}, expected a numpy array")
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != ROW_LENGTH:
        raise DataError(f"CIFAR file {source}: 'data' is an array of {pixels.dtype} and shape {pixels.shape}, "
                        f"expected uint8 of shape (N, {ROW_LENGTH})")
    result = {"data": pixels}
    for key, num_classes in label_keys.items():
        if key not in batch:
            raise DataError(f"CIFAR file {source} has no {key!r} entry (keys: {sorted(map(str, batch))})")
        result[key] = _labels(batch[key], key, pixels.shape[0], num_classes, source)
    return result


def parse_meta(data: bytes, source: str, name_keys: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """A CIFAR meta file's class names, validated: each key of ``name_keys`` a list of that many strings."""
    meta = _str_keys(safe_loads(data, source), source)
    result = {}
    for key, count in name_keys.items():
        names = meta.get(key)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
            raise DataError(f"CIFAR file {source}: {key!r} must be a list of class names, got "
                            f"{type(names).__name__ if key in meta else 'nothing'}")
        if len(names) != count:
            raise DataError(f"CIFAR file {source}: {key!r} lists {len(names)} class names, expected {count}")
        result[key] = tuple(_text(n) for n in names)
    return result


def read_members(root: Path, folder: str, archive: str, members: Sequence[str]) -> tuple[dict[str, bytes], str]:
    """The raw bytes of ``members`` of a CIFAR distribution, and where they were read from.

    Read from ``root/folder/`` (the extracted archive) when that folder exists, otherwise from inside
    ``root/archive`` (a tar.gz holding ``folder/``), in one pass, without extracting it. Raises
    DataError (naming the file and the cause) for a missing member, an unreadable or truncated archive,
    and FileNotFoundError when neither the folder nor the archive exists.
    """
    extracted = root / folder
    if extracted.is_dir():
        contents = {}
        for member in members:
            path = extracted / member
            try:
                if path.exists() and not path.is_file():  # a folder, a device (/dev/zero), a pipe
                    raise DataError(f"CIFAR file {path} is not a regular file")
                if path.exists() and path.stat().st_size > MAX_MEMBER_BYTES:
                    raise DataError(f"CIFAR file {path} holds {path.stat().st_size:,} bytes, more than the "
                                    f"{MAX_MEMBER_BYTES:,} a CIFAR batch may hold here")
                contents[member] = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read CIFAR file {path}: {exc.strerror or exc}") from None
        return contents, str(extracted)
    archive_path = root / archive
    if not archive_path.is_file():
        raise FileNotFoundError(archive_path)
    wanted = {f"{folder}/{member}": member for member in members}
    contents = {}
    try:
        # Stream mode: one sequential pass over the gzip stream, no seeking back.
        with tarfile.open(archive_path, mode="r|gz") as tar:
            for info in tar:
                if info.size > MAX_MEMBER_BYTES or info.offset_data + info.size > MAX_ARCHIVE_BYTES:
                    raise DataError(f"the CIFAR archive {archive_path} holds {info.name} of {info.size:,} bytes at "
                                    f"byte {info.offset_data:,}: more than a CIFAR archive may hold here (a member of "
                                    f"at most {MAX_MEMBER_BYTES:,} bytes within the first {MAX_ARCHIVE_BYTES:,}); "
                                    "reading stopped there")
                member = wanted.get(info.name.removeprefix("./"))
                if member is not None and info.isfile():
                    handle = tar.extractfile(info)
                    contents[member] = handle.read() if handle is not None else b""
                    if len(contents) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        cause = "it ends early (truncated)" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"cannot read the CIFAR archive {archive_path}: {cause}") from None
    missing = [f"{folder}/{m}" for m in members if m not in contents]
    if missing:
        raise DataError(f"the CIFAR archive {archive_path} does not hold {', '.join(missing)} (truncated, or not "
                        f"the python version of the dataset)")
    return contents, str(archive_path)


def read_split(root: Path, folder: str, archive: str, files: Sequence[str],
               label_keys: dict[str, int]) -> dict[str, np.ndarray]:
    """The batches ``files`` of one split, concatenated: ``data`` uint8 (N, 3072) and int64 labels [N]."""
    contents, where = read_members(root, folder, archive, files)
    parts = [parse_batch(contents.pop(name), f"{where}/{name}" if where.endswith(folder) else f"{where}:{name}",
                         label_keys) for name in files]
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


# --- exact writing --------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol 2 with Python 2 string semantics: str and bytes are written as Python 2 ``str``.

    ``U`` (SHORT_BINSTRING, 1-byte length) below 256 bytes, else ``T`` (BINSTRING, 4-byte little-endian
    length), as cPickle wrote them; numpy's reconstruct global is written under ``numpy.core``.
    """

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2)

    def save_py2_string(self, obj: str | bytes) -> None:
        if isinstance(obj, str):
            try:
                raw = obj.encode("latin1")
            except UnicodeEncodeError:  # Python 2 would pickle such a text as unicode
                self.save_str(obj)
                return
        else:
            raw = obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<I", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", None) or ""
        if module.startswith("numpy._core.") or module.startswith("numpy.core."):
            qualified = (module.replace("numpy._core.", "numpy.core.", 1), name or obj.__name__)
        elif obj is np.ndarray or obj is np.dtype:
            qualified = ("numpy", obj.__name__)
        else:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + f"{qualified[0]}\n{qualified[1]}\n".encode("ascii"))
        self.memoize(obj)

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:
            # Always the protocol-2 reconstruct form (NumPy picks _frombuffer for protocol 5 only, but be explicit).
            return obj.__reduce__()
        return NotImplemented


def py2_pickle_bytes(obj: Any) -> bytes:
    """``obj`` pickled as Python 2's cPickle (protocol 2) would: str and bytes as Python 2 strings."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer).dump(obj)
    return buffer.getvalue()


def _as_rows(images: Any, what: str) -> np.ndarray:
    """uint8 images [N, 3, 32, 32] (or rows [N, 3072]) as contiguous rows [N, 3072]; ValueError otherwise."""
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"{what}: images must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 4 and array.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE):
        array = array.reshape(array.shape[0], ROW_LENGTH)
    if array.ndim != 2 or array.shape[1] != ROW_LENGTH:
        raise ValueError(f"{what}: images must have shape [N, 3, 32, 32] (channel-major, as CIFAR stores them) "
                         f"or [N, 3072], got {list(array.shape)}")
    return np.ascontiguousarray(array)


def _as_labels(labels: Any, count: int, num_classes: int, what: str) -> list[int]:
    values = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(values) != count:
        raise ValueError(f"{what}: {len(values)} labels for {count} images")
    if any(not 0 <= v < num_classes for v in values):
        raise ValueError(f"{what}: labels must be in 0..{num_classes - 1}")
    return values


def _batch_dict(rows: np.ndarray, label_lists: dict[str, list[int]], batch_label: str, start: int) -> dict:
    # Key order as in the official files; file names follow the official pattern "<name>_s_<index>.png".
    batch = {"batch_label": batch_label}
    batch.update(label_lists)
    batch["data"] = rows
    batch["filenames"] = [f"image_s_{start + i:06d}.png" for i in range(rows.shape[0])]
    return batch


def _write_distribution(root: Path, folder: str, archive_name: str, files: dict[str, bytes],
                        archive: bool, keep_folder: bool) -> Path:
    """Write ``files`` into ``root/folder/`` and/or ``root/archive_name`` (each file atomically)."""
    from miprometheus.files import atomic_write  # local: keeps this module importable on its own

    root.mkdir(parents=True, exist_ok=True)
    if keep_folder or not archive:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            atomic_write(root / folder / name, lambda handle, payload=payload: handle.write(payload), mode="wb")
    if not archive:
        return root / folder
    target = root / archive_name
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{archive_name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                folder_info = tarfile.TarInfo(folder)
                folder_info.type, folder_info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(folder_info)
                for name, payload in files.items():
                    info = tarfile.TarInfo(f"{folder}/{name}")
                    info.size, info.mode = len(payload), 0o644
                    tar.addfile(info, io.BytesIO(payload))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _split_rows(count: int, parts: int) -> Iterable[tuple[int, int]]:
    bounds = np.linspace(0, count, parts + 1).round().astype(int)
    return zip(bounds[:-1].tolist(), bounds[1:].tolist())


def write_cifar10(root: str | os.PathLike, train_images: Any, train_labels: Any, test_images: Any,
                  test_labels: Any, *, label_names: Sequence[str] = CIFAR10_LABEL_NAMES, archive: bool = False,
                  keep_folder: bool = True, progress: Callable[[str], None] | None = None) -> Path:
    """Write a CIFAR-10 python-version distribution, byte-compatible with the official one, under ``root``.

    ``train_images`` / ``test_images``: uint8 arrays (numpy, or anything ``np.asarray`` takes, such as a
    CPU tensor) of shape [N, 3, 32, 32] (channel-major, RGB) or [N, 3072]; ``*_labels``: N ints in
    0..len(label_names)-1. The training images are split into ``data_batch_1`` .. ``data_batch_5``
    (as even as possible; any N >= 0), the test images go to ``test_batch``, and ``batches.meta`` holds
    ``label_names``, ``num_cases_per_batch`` and ``num_vis`` (3072). Files go to
    ``root/cifar-10-batches-py/``; with ``archive`` also (or, with ``keep_folder=False``, only) to
    ``root/cifar-10-python.tar.gz``, the layout the official tarball has. Every file is written atomically.
    Returns the folder, or the archive when one is written. ValueError for images or labels of the
    wrong dtype, shape or range. The md5 of the result is not the official one: a CIFAR10 problem
    reads such a folder or archive without checking it (md5 is checked on downloads only).
    """
    names = [str(n) for n in label_names]
    train_rows = _as_rows(train_images, "write_cifar10 train")
    test_rows = _as_rows(test_images, "write_cifar10 test")
    train = _as_labels(train_labels, train_rows.shape[0], len(names), "write_cifar10 train")
    test = _as_labels(test_labels, test_rows.shape[0], len(names), "write_cifar10 test")
    files: dict[str, bytes] = {}
    per_batch = 0
    for number, (start, stop) in enumerate(_split_rows(train_rows.shape[0], len(CIFAR10_TRAIN_FILES)), 1):
        per_batch = max(per_batch, stop - start)
        batch = _batch_dict(train_rows[start:stop], {"labels": train[start:stop]},
                            f"training batch {number} of {len(CIFAR10_TRAIN_FILES)}", start)
        files[f"data_batch_{number}"] = py2_pickle_bytes(batch)
        if progress is not None:
            progress(f"data_batch_{number}")
    files["test_batch"] = py2_pickle_bytes(_batch_dict(test_rows, {"labels": test}, "testing batch 1 of 1", 0))
    files[CIFAR10_META] = py2_pickle_bytes({"num_cases_per_batch": per_batch, "label_names": names,
                                            "num_vis": ROW_LENGTH})
    files["readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"
    return _write_distribution(Path(os.path.expanduser(str(root))), CIFAR10_FOLDER, CIFAR10_ARCHIVE, files,
                               archive, keep_folder)


def write_cifar100(root: str | os.PathLike, train_images: Any, train_fine_labels: Any, train_coarse_labels: Any,
                   test_images: Any, test_fine_labels: Any, test_coarse_labels: Any, *,
                   fine_label_names: Sequence[str], coarse_label_names: Sequence[str], archive: bool = False,
                   keep_folder: bool = True) -> Path:
    """Write a CIFAR-100 python-version distribution (``train``, ``test``, ``meta``) under ``root``.

    As :func:`write_cifar10`, with fine labels in 0..len(fine_label_names)-1 and coarse labels in
    0..len(coarse_label_names)-1 (officially 100 and 20 names). Files go to ``root/cifar-100-python/``
    and, with ``archive``, to ``root/cifar-100-python.tar.gz``. Returns the folder or the archive.
    """
    fine_names = [str(n) for n in fine_label_names]
    coarse_names = [str(n) for n in coarse_label_names]
    files: dict[str, bytes] = {}
    for split, images, fine, coarse in (("train", train_images, train_fine_labels, train_coarse_labels),
                                        ("test", test_images, test_fine_labels, test_coarse_labels)):
        rows = _as_rows(images, f"write_cifar100 {split}")
        label_lists = {
            "fine_labels": _as_labels(fine, rows.shape[0], len(fine_names), f"write_cifar100 {split} fine"),
            "coarse_labels": _as_labels(coarse, rows.shape[0], len(coarse_names), f"write_cifar100 {split} coarse"),
        }
        files[split] = py2_pickle_bytes(_batch_dict(rows, label_lists, split, 0))
    files[CIFAR100_META] = py2_pickle_bytes({"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return _write_distribution(Path(os.path.expanduser(str(root))), CIFAR100_FOLDER, CIFAR100_ARCHIVE, files,
                               archive, keep_folder)


__all__ = ["CIFAR10_ARCHIVE", "CIFAR10_FOLDER", "CIFAR10_LABEL_NAMES", "CIFAR100_ARCHIVE", "CIFAR100_FOLDER",
           "parse_batch", "parse_meta", "py2_pickle_bytes", "read_members", "read_split", "safe_loads",
           "write_cifar10", "write_cifar100"]

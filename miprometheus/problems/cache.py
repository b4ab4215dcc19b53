"""Cache files of generated datasets: built once, shared by every experiment that asks for the same content.

A cache file is named by a key: the hash of the canonical JSON of the parameters that define the
content and of the generator's format version. Several processes of a grid asking for the same file at
once take a file lock (``fcntl.flock``): one builds, the others wait and then read what it wrote.
Files are written to a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pickle
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from miprometheus.errors import DataError
from miprometheus.files import atomic_write
from miprometheus.layout import LOCK

FORMAT = "miprometheus-dataset-cache"
logger = logging.getLogger("miprometheus.cache")


def canonical_json(params: dict[str, Any]) -> str:
    """Parameters as one canonical JSON string (sorted keys, no spaces): the same content, the same text."""
    try:
        return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"dataset cache parameters must be plain JSON values: {exc}") from None


def cache_key(name: str, params: dict[str, Any], format_version: int) -> str:
    """The hash naming a cache file: what is generated (``name``), from what parameters, in what format."""
    text = canonical_json({"name": name, "params": params, "format_version": int(format_version)})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(folder: Path | str, name: str, params: dict[str, Any], format_version: int) -> Path:
    """Where the cache file of this content lives: ``<folder>/<name>-<key>.pt``."""
    return Path(os.path.expanduser(str(folder))) / f"{name}-{cache_key(name, params, format_version)}.pt"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (the lock file stays: removing it would race with a waiter)."""
    lock_path = path.with_name(path.name + LOCK)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataError(f"cannot create the dataset cache lock {lock_path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process builds
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the holder is killed


def _read(path: Path, name: str, params: dict[str, Any], format_version: int) -> Any:
    """The data of a cache file; ValueError (with the reason) when it is corrupt or describes other content."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError) as exc:
        raise ValueError(f"unreadable ({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc!r})"
                         ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a dataset cache file (no '{FORMAT}' marker)")
    recorded = (payload.get("name"), payload.get("format_version"), payload.get("params"))
    if recorded != (name, int(format_version), json.loads(canonical_json(params))) or "data" not in payload:
        raise ValueError("it holds other content than its name says")
    return payload["data"]


def _write(path: Path, name: str, params: dict[str, Any], format_version: int, data: Any) -> None:
    payload = {"format": FORMAT, "name": name, "format_version": int(format_version),
               "params": json.loads(canonical_json(params)), "data": data}
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle), mode="wb")
    except OSError as exc:
        raise DataError(f"cannot write the dataset cache {path}: {exc.strerror or exc}") from None


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file is at ``path`` now (a rename puts a new inode there), or None when there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def cached_dataset(folder: Path | str, name: str, params: dict[str, Any], format_version: int,
                   build: Callable[[], Any], regenerate: bool = False) -> Any:
    """The data ``build()`` makes for these parameters, read from its cache file or built and cached.

    ``params`` are the JSON values that define the content (sizes, ``dataset_seed``, ...; not the batch
    size); raise ``format_version`` whenever ``build`` changes what it makes, so older files are not used.
    ``build`` returns tensors and plain values (saved with ``torch.save``, read with ``weights_only=True``).
    ``regenerate=True`` rebuilds the file, unless another process rebuilt it while this one waited for the
    lock (a grid of experiments all set to regenerate builds once). A corrupt file is rebuilt; when it
    cannot be replaced, a DataError names it.
    """
    path = cache_path(folder, name, params, format_version)
    if not regenerate and path.is_file():
        try:
            return _read(path, name, params, format_version)
        except ValueError:
            pass  # corrupt: rebuilt below, under the lock (another process may be rebuilding it already)
    seen = _identity(path)  # what this process saw (or found corrupt, or wants regenerated)
    with file_lock(path):
        current = _identity(path)
        if current is not None and (current != seen or not regenerate):
            # A file another process wrote while this one waited is read, even with regenerate; an
            # unchanged file is read unless it is the one this process found corrupt or must regenerate.
            try:
                return _read(path, name, params, format_version)
            except ValueError as exc:
                if not os.access(path.parent, os.W_OK):
                    raise DataError(f"the dataset cache {path} is corrupt ({exc}) and its folder is not writable: "
                                    "delete the file, or make the folder writable so it is rebuilt") from None
                logger.warning("dataset cache %s is corrupt (%s): rebuilding it", path, exc)
        started = time.perf_counter()
        data = build()
        _write(path, name, params, format_version, data)
        logger.info("built dataset cache %s in %.1f s", path, time.perf_counter() - started)
        return data


__all__ = ["cache_key", "cache_path", "cached_dataset", "canonical_json", "file_lock"]

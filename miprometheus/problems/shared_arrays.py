"""One in-memory copy per file and process, for every split and run that reads the file.

The training, validation and test splits of an experiment often read the same file (the shared
MNIST test set is split by index into all three). :func:`shared_asset` loads each file once per
process and hands every split the same object. The cache holds its entries weakly: when the last
problem using a file is gone (a finished run in a notebook, a test), the memory is freed.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from miprometheus.errors import DataError

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


__all__ = ["Arrays", "cached_count", "file_key", "shared_asset"]

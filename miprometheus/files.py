"""Files that survive a kill at any instant: atomic writes and collision-free experiment folders."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Write a file through a temporary file in the same folder, then rename it into place.

    A kill at any instant leaves either the old file or the new one, never a part of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would hide results from the user's group
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda h: h.write(text))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as an indented JSON file atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def timestamp() -> str:
    """The local time as ``YYYYmmdd_HHMMSS``, for folder names."""
    return time.strftime("%Y%m%d_%H%M%S")


def create_unique_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name`` (or ``name_1``, ``name_2``, ...): never shared, even by runs in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    for i in range(10_000):
        candidate = parent / (name if i == 0 else f"{name}_{i}")
        try:
            candidate.mkdir()  # atomic: exactly one process succeeds
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a new folder under {parent}")

"""Files that survive a kill at any instant: atomic writes and collision-free experiment folders."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from miprometheus.errors import RunFailed

#: the errors of a full disk, a full quota or a file-size limit (RLIMIT_FSIZE with SIGXFSZ ignored)
_NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file size limit exceeded"}


class WriteFailed(RunFailed):
    """A file could not be written (full disk, quota, file-size limit): the run failed, exit 1."""


def write_failure(error: BaseException, path: Path) -> WriteFailed | None:
    """The WriteFailed that names ``path`` and the cause when ``error`` is a full disk or a size limit,
    else None. torch.save reports a failed write as a RuntimeError whose context is the OSError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_ROOM:
            return WriteFailed(f"the run failed: {_NO_ROOM[seen.errno]} writing {path}")
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for number, words in _NO_ROOM.items():
        if os.strerror(number) in text:
            return WriteFailed(f"the run failed: {words} writing {path}")
    return None


#: a temporary file of :func:`atomic_write`: ``.<name>.tmp-<pid>-<thread>`` beside ``<name>`` (and the
#: ``.<name>.<random>.tmp`` of earlier versions), left behind only by a kill in the middle of a write
TEMP_FILE = re.compile(r"^\..+(\.tmp-\d+(-\d+)?|\.[A-Za-z0-9_]{8}\.tmp)$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Write a file through a temporary file in the same folder, then rename it into place.

    A kill at any instant leaves either the old file or the new one, never a part of it.
    A full disk or a file-size limit is a :class:`WriteFailed` naming ``path``. The temporary file is
    ``.<name>.tmp-<pid>-<thread>`` (one writer per file and thread), so that a kill's leftover is recognisable
    (:func:`remove_temp_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{threading.get_native_id()}"
    try:
        # the permissions of a plain write (umask), so that the user's group can read the results
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        failed = write_failure(error, path) if isinstance(error, Exception) else None
        if failed is not None:
            raise failed from None
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


def remove_temp_files(*folders: Path) -> list[Path]:
    """Remove what kills left of :func:`atomic_write`'s temporary files directly in ``folders``; the paths.

    Only for folders that nobody else writes: the caller holds the folder's lock (``locks.py``).
    """
    removed = []
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.is_file(follow_symlinks=False) and TEMP_FILE.match(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed

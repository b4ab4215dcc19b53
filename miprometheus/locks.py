"""Folder locks: one process at a time works in an experiment (or grid) folder.

A lock is ``fcntl.flock`` on ``<folder>/.lock``, held for the life of the process that took it. The
kernel releases it when that process dies, however it dies (``kill -9`` included), so a lock is never
stale; the file itself stays (removing it would race with a process that just opened it) and holds
who took it last — pid, host, start time, command — to name the holder when a second process is
refused. Where the file system does not support ``flock`` (some network file systems), the lock is
skipped with no error: exclusion is a courtesy to the user, not a condition of a correct run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from miprometheus.errors import BadInputError
from miprometheus.layout import LOCK

LOCK_NAME = LOCK


class FolderLock:
    """An exclusive, process-lifetime lock on a folder (``<folder>/.lock``); see the module docstring."""

    def __init__(self, folder: Path, what: str) -> None:
        self.folder = Path(folder)
        self.what = what  # e.g. "training", "testing", "grid": says what the holder is doing
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise BadInputError naming the process that holds it."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _describe(_read_holder(fd))
                os.close(fd)
                raise BadInputError(
                    f"{self.folder} is in use by another process ({holder}); two processes in one folder "
                    f"would interleave their files. Wait for it to end, or stop it; the lock ({self.path}) "
                    f"is released when that process exits, however it exits.") from None
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return self  # no flock on this file system: run unlocked
            raise
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]}
        with contextlib.suppress(OSError):  # the holder's name is a courtesy; a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        """Release the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def hold_folder_lock(folder: Path, what: str) -> Iterator[FolderLock]:
    """Hold ``folder``'s lock for the ``with`` block; BadInputError (exit 2) names the holder if taken."""
    lock = FolderLock(folder, what).acquire()
    try:
        yield lock
    finally:
        lock.release()


def lock_holder(folder: Path) -> str | None:
    """Who holds ``folder``'s lock now (as in the refusal message), or None when nobody does."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _describe(_read_holder(fd))
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LockState:
    """Whether a folder's lock is held now, and what its file records of the process that took it last."""

    held: bool
    holder: dict  # pid, host, what, since, command ({} when the lock was never taken)

    def describe(self) -> str:
        return _describe(self.holder)


def lock_state(folder: Path) -> LockState:
    """Whether ``folder``'s lock is held, found without taking it where the system can tell.

    Linux lists every flock in ``/proc/locks`` (device and inode): a lock listed there is held. One not
    listed is free when the process its file names (on this host) has ended, since every holder writes its
    name there. Otherwise (no ``/proc/locks``, another host, a file system whose device it shows
    differently) it is probed as :func:`lock_holder` does, with a shared lock released at once.
    """
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return LockState(False, {})  # never taken: no grid or trainer ever held this folder
    try:
        holder = _read_holder(fd)
        listed = _listed_in_proc_locks(os.fstat(fd))
        if listed:
            return LockState(True, holder)
        pid = holder.get("pid")
        if listed is False and holder.get("host") == socket.gethostname() and isinstance(pid, int) \
                and not pid_alive(pid):
            return LockState(False, holder)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return LockState(exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES), holder)
        return LockState(False, holder)
    finally:
        os.close(fd)  # releases the probe's shared lock, if it was taken


def _listed_in_proc_locks(stat: os.stat_result) -> bool | None:
    """Whether /proc/locks lists a flock on the file (None: no /proc/locks to read)."""
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read(1 << 22).splitlines()  # bounded: a few MiB hold tens of thousands of locks
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 6149 fe:00:2154501 0 EOF"; a process waiting for a lock has "->" after "1:"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not), whoever its parent is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict) -> str:
    if not info:
        return "holder unknown"
    return (f"{info.get('what', 'a process')}: pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"since {info.get('since', '?')}")

"""The small interface every executor implements: submit, poll, cancel."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIP_COMMAND = [sys.executable, "-m", "miprometheus"]


@dataclass
class Job:
    """One ``mip`` command of a grid (a training or a test of one experiment).

    Every path is relative to ``workdir`` (the grid folder), so that an executor without a shared
    filesystem can ship ``inputs`` to a worker, run the command there, and bring ``outputs`` back.
    """

    id: str
    args: list[str]  # arguments of `mip`, e.g. ["train", "configs/x.yaml", "--expdir", "experiments/x"]
    workdir: Path
    log: str  # file receiving the command's stdout and stderr
    inputs: list[str] = field(default_factory=list)  # files or folders the command reads
    outputs: list[str] = field(default_factory=list)  # folders the command writes
    threads: int = 1  # CPU threads (torch.set_num_threads and OMP_NUM_THREADS)
    gpus: float = 0.0  # GPUs (a fraction shares one)
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [*MIP_COMMAND, *self.mip_arguments()]

    def mip_arguments(self) -> list[str]:
        """The arguments of `mip` this job runs (``command()`` without the interpreter)."""
        # A job holding a GPU token runs on it: CUDA_VISIBLE_DEVICES shows the child only its GPU(s),
        # which are then `cuda` (= cuda:0) to it.
        device = ["--device", "cuda"] if self.gpus > 0 and "--device" not in self.args else []
        return [*self.args, "--threads", str(self.threads), *device]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.env)
        env.update(extra or {})
        return env


@dataclass
class JobResult:
    """How a job ended: its exit code (None when it was lost, e.g. a node died) and the error line."""

    exit_code: int | None
    error: str | None = None


class Executor:
    """Runs jobs. ``submit`` returns a handle; ``poll`` returns None while running, then a JobResult."""

    def submit(self, job: Job) -> Any:
        raise NotImplementedError

    def poll(self, handle: Any) -> JobResult | None:
        raise NotImplementedError

    def cancel(self, handle: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (processes, a local Ray cluster)."""


def last_error_line(log: Path) -> str | None:
    """The last line of a log that looks like an error (or the last line), for the grid summary."""
    try:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if "error" in line.lower() or "Traceback" in line or "Killed" in line:
            return line[:500]
    return lines[-1][:500] if lines else None


def signal_name(number: int) -> str:
    """A signal's name: ``SIGKILL``, ``SIGRTMIN+6`` for real-time ones (not in ``signal.Signals``), else its number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
    if low is not None and high is not None and low < number < high:
        return f"SIGRTMIN+{number - low}"
    return str(number)


def killed_by(exit_code: int, error: str | None) -> str:
    """The error line of a child killed by a signal (``exit_code`` < 0, as subprocess reports it)."""
    return f"killed by signal {signal_name(-exit_code)}" + (f"; {error}" if error else "")


# Looked up once in the parent: between fork and exec the child must not load libraries (the grid
# process may have threads, e.g. the live table's, holding the loader's lock at fork time).
_PRCTL = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def has_death_signal() -> bool:
    """Whether this system can signal a child when its parent dies (Linux's PR_SET_PDEATHSIG)."""
    return _PRCTL is not None


def die_with_parent() -> None:
    """In a child: get SIGTERM when its parent dies (even by SIGKILL), so it checkpoints and stops."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG



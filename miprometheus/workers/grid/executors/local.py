"""The local executor: each job a child process on this machine, with its own threads, GPU and log."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from miprometheus.workers.grid.executors.base import Executor, Job, JobResult, killed_by, last_error_line


def visible_gpus() -> list[str]:
    """GPU ids this process may use (CUDA_VISIBLE_DEVICES, else every device torch sees)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch/CUDA: no GPUs
        return []


# Looked up once in the parent: between fork and exec the child must not load libraries (the grid
# process may have threads, e.g. the live table's, holding the loader's lock at fork time).
_PRCTL = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the grid process dies (even by SIGKILL), so it checkpoints and stops."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


class GPUTokens:
    """GPU capacity shared by jobs: each GPU holds 1.0; a job takes whole GPUs or a fraction of one."""

    def __init__(self, gpus: list[str]) -> None:
        self.free = {g: 1.0 for g in gpus}

    def take(self, amount: float) -> list[str] | None:
        if amount <= 0:
            return []
        if amount < 1:
            for gpu, left in sorted(self.free.items(), key=lambda kv: kv[1]):
                if left + 1e-9 >= amount:
                    self.free[gpu] = left - amount
                    return [gpu]
            return None
        whole = [g for g, left in self.free.items() if left >= 1 - 1e-9][: int(amount)]
        if len(whole) < int(amount):
            return None
        for gpu in whole:
            self.free[gpu] = 0.0
        return whole

    def give_back(self, gpus: list[str], amount: float) -> None:
        share = amount if amount < 1 else 1.0
        for gpu in gpus:
            self.free[gpu] = min(1.0, self.free[gpu] + share)


class LocalExecutor(Executor):
    """A pool of child processes (the runner limits how many run at once)."""

    def __init__(self) -> None:
        self.gpus = GPUTokens(visible_gpus())
        self.running: dict[int, tuple[subprocess.Popen, Job, list[str]]] = {}

    def can_start(self, job: Job) -> bool:
        if job.gpus <= 0:
            return True
        taken = self.gpus.take(job.gpus)
        if taken is None:
            return False
        self.gpus.give_back(taken, job.gpus)
        return True

    def submit(self, job: Job) -> Any:
        gpus = self.gpus.take(job.gpus)
        if gpus is None:
            raise RuntimeError(f"no GPU free for job {job.id} ({job.gpus} GPU)")
        log_path = Path(job.workdir) / job.log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the job ends
        env = job.environment({"CUDA_VISIBLE_DEVICES": ",".join(gpus)})
        process = subprocess.Popen(job.command(), cwd=job.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent if _PRCTL is not None else None)
        log.close()
        self.running[process.pid] = (process, job, gpus)
        return process.pid

    def poll(self, handle: Any) -> JobResult | None:
        process, job, gpus = self.running[handle]
        code = process.poll()
        if code is None:
            return None
        del self.running[handle]
        self.gpus.give_back(gpus, job.gpus)
        error = None if code == 0 else last_error_line(Path(job.workdir) / job.log)
        if code < 0:
            error = killed_by(code, error)
        return JobResult(code, error)

    def cancel(self, handle: Any) -> None:
        entry = self.running.get(handle)
        if entry is None:
            return
        process = entry[0]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the trainer writes its last checkpoint, then exits 130
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        for handle in list(self.running):
            self.cancel(handle)

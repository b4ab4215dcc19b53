"""The local executor: each job a child process on this machine, with its own threads, GPU and log."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from miprometheus.locks import pid_alive
from miprometheus.workers.grid.executors.base import (
    MIP_COMMAND,
    Executor,
    Job,
    JobResult,
    die_with_parent,
    has_death_signal,
    killed_by,
    last_error_line,
)
from miprometheus.workers.grid.executors.fork_server import ForkServer, ServerGone

logger = logging.getLogger(__name__)
CANCEL_SECONDS = 30  # how long a cancelled job may take to write its checkpoint before it is killed


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
    """A pool of child processes (the runner limits how many run at once).

    With ``warm_start``, a job's `mip` process is forked from a server that has imported torch once
    (``fork_server.py``) instead of started afresh; jobs whose command is not `mip` (tests), and every
    job once the server fails, start as subprocesses.
    """

    def __init__(self, warm_start: bool = True) -> None:
        self.gpus = GPUTokens(visible_gpus())
        self.running: dict[int, tuple[subprocess.Popen | None, Job, list[str]]] = {}
        self.warm_start = warm_start
        self.server: ForkServer | None = None

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
        env = job.environment({"CUDA_VISIBLE_DEVICES": ",".join(gpus)})
        command = job.command()
        pid = self._start_warm(command, job, env, log_path) if command[:len(MIP_COMMAND)] == MIP_COMMAND else None
        if pid is not None:
            self.running[pid] = (None, job, gpus)
            return pid
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the job ends
        process = subprocess.Popen(command, cwd=job.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=die_with_parent if has_death_signal() else None)
        log.close()
        self.running[process.pid] = (process, job, gpus)
        return process.pid

    def _start_warm(self, command: list[str], job: Job, env: dict[str, str], log: Path) -> int | None:
        """The pid of the job forked by the warm-start server; None to start it as a subprocess."""
        if not self.warm_start:
            return None
        try:
            if self.server is None:
                self.server = ForkServer()
            return self.server.start(command[len(MIP_COMMAND):], Path(job.workdir).resolve(), env, log.resolve())
        except (ServerGone, OSError) as error:
            logger.warning("warm start off, jobs start as fresh processes: %s", error)
            self.warm_start = False
            return None

    def _exit_code(self, handle: int) -> int | None:
        process = self.running[handle][0]
        if process is not None:
            return process.poll()
        assert self.server is not None
        return self.server.exit_code(handle)

    def poll(self, handle: Any) -> JobResult | None:
        process, job, gpus = self.running[handle]
        code = self._exit_code(handle)
        if code is None:
            if process is not None or not (self.server is not None and self.server.gone) or pid_alive(handle):
                return None
            code = self._exit_code(handle)  # the server ended: its last words may hold this exit
        del self.running[handle]
        self.gpus.give_back(gpus, job.gpus)
        if code is None:
            return JobResult(None, "lost: the warm-start server ended before the job's exit status reached it")
        error = None if code == 0 else last_error_line(Path(job.workdir) / job.log)
        if code < 0:
            error = killed_by(code, error)
        return JobResult(code, error)

    def cancel(self, handle: Any) -> None:
        entry = self.running.get(handle)
        if entry is None:
            return
        process = entry[0]
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the trainer writes its last checkpoint, then exits 130
                try:
                    process.wait(timeout=CANCEL_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return
        for number, seconds in ((signal.SIGTERM, CANCEL_SECONDS), (signal.SIGKILL, 10)):
            if not self._wait_warm(handle, 0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle, number)
            if self._wait_warm(handle, seconds):
                return

    def _wait_warm(self, handle: int, seconds: float) -> bool:
        """Whether the forked job ``handle`` ended within ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            if self._exit_code(handle) is not None or not pid_alive(handle):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        for handle in list(self.running):
            self.cancel(handle)
        if self.server is not None:
            self.server.close()

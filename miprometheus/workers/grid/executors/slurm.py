"""The SLURM executor: each job a submitit job (or one task of a job array), requeued on preemption.

The grid folder must be on a filesystem that the compute nodes share with the machine running the
grid: jobs run their ``mip`` command in it, and submitit keeps its own files in ``<grid>/slurm/``.
On preemption or timeout, submitit signals the job; the callable stops ``mip`` (which writes
``models/model_last.pt`` and exits 130) and is requeued as ``mip train --resume <experiment folder>``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from miprometheus.errors import BadInputError
from miprometheus.layout import GRID_SLURM_DIR, LAST, MODELS_DIR
from miprometheus.workers.commands import resume_command, resumed_folder
from miprometheus.workers.grid.executors.base import Executor, Job, JobResult, last_error_line
from miprometheus.workers.grid.folders import newest_experiment

#: SLURM states after which a job will not run again
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
                   # submitit's LocalExecutor
                   "FINISHED", "INTERRUPTED"}
#: seconds a stopped ``mip`` has to write its last checkpoint before the job is requeued without it
STOP_GRACE_S = 60.0
#: exit code of ``mip`` stopped by SIGTERM/SIGINT after writing models/model_last.pt
STOPPED_CODE = 130
#: seconds a ``mip`` stopped from outside waits for a preemption signal before the job reports its exit
PREEMPT_LINGER_S = 3.0
#: seconds a job that SLURM reports finished may take to show its result file (shared filesystems lag)
RESULT_GRACE_S = 30.0


try:  # this module is only imported for the slurm executor; without submitit, SlurmExecutor says so
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is an optional dependency
    _Checkpointable = object  # type: ignore[assignment,misc]


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError as exc:
        raise BadInputError("the slurm executor needs submitit: pip install miprometheus[slurm]") from exc
    return submitit


def resume_args(job: Job) -> list[str] | None:
    """``mip`` arguments that continue ``job``'s training from its last checkpoint, or None if it has none.

    The configs and the placement flags go (the experiment folder has them); the other flags stay.
    """
    if not job.args or job.args[0] != "train" or not job.outputs:
        return None
    resumed = resumed_folder(job.args)
    if resumed is not None:  # already a resumed run: resume the same folder again
        folder: Path | None = Path(job.workdir) / resumed
    else:
        folder = newest_experiment(Path(job.workdir) / job.outputs[0])
    if folder is None or not (folder / MODELS_DIR / LAST).is_file():
        return None
    try:
        relative = str(folder.resolve().relative_to(Path(job.workdir).resolve()))
    except ValueError:
        relative = str(folder.resolve())
    return resume_command(relative, job.args[1:])


class MipCommand(_Checkpointable):
    """The callable a submitit job runs: one ``mip`` command, stopped and resumed on preemption.

    Being a submitit ``Checkpointable``, it is asked for a replacement (:meth:`checkpoint`) when SLURM
    warns that the job will be preempted or timed out, and submitit requeues that replacement.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self._process: subprocess.Popen | None = None
        self._code: int | None = None
        self._stopping = False  # this callable asked the child to stop

    def __getstate__(self) -> dict[str, Any]:
        # the running child cannot travel in a pickle (submitit pickles the callable to requeue it)
        return {"job": self.job, "_process": None, "_code": None, "_stopping": False}

    def command(self) -> list[str]:
        """The full command line this callable runs."""
        return self.job.command()

    def __call__(self) -> int:
        """Run the command in the grid folder, its output appended to the job's log; return its exit code."""
        job = self.job
        if os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0") and resumed_folder(job.args) is None:
            # SLURM requeued the job by itself (preemption without submitit's signal): continue, don't restart
            resumed = resume_args(job)
            if resumed is not None:
                job = self.job = _with_args(job, resumed)
        log_path = Path(job.workdir) / job.log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(job.command(), cwd=job.workdir, env=job.environment(), stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_ignore_submitit_signal)
        # a thread reaps the child, so that the signal handler (checkpoint, in the main thread) never has
        # to wait on the child itself while the main thread is already waiting on it
        threading.Thread(target=self._reap, daemon=True).start()
        try:
            while self._code is None:
                time.sleep(0.2)
            if self._code == STOPPED_CODE and not self._stopping:
                # stopped from outside: SLURM preempting the job sends SIGTERM before the USR2 that makes
                # submitit requeue it (calling checkpoint, which ends this process); a cancel sends nothing more
                deadline = time.monotonic() + PREEMPT_LINGER_S
                while time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            self._stop(STOP_GRACE_S)  # cancelled or interrupted: the child must not outlive the job
        return self._code

    def _reap(self) -> None:
        assert self._process is not None
        self._code = self._process.wait()

    def _stop(self, grace_s: float) -> None:
        """Ask a running ``mip`` to stop (it checkpoints on SIGTERM), and kill it after ``grace_s``."""
        process = self._process
        if process is None or self._code is not None:
            return
        self._stopping = True
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while self._code is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._code is None:
            process.kill()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The submission that replaces this one when the job is preempted or times out (submitit calls it).

        Stops ``mip`` so that it writes its last checkpoint, then resumes from it; without a checkpoint
        (stopped before the first one), the same command starts over.
        """
        submitit = _import_submitit()
        self._stop(STOP_GRACE_S)
        resumed = resume_args(self.job)
        job = self.job if resumed is None else _with_args(self.job, resumed)
        return submitit.helpers.DelayedSubmission(checkpointable(job))


def _with_args(job: Job, args: list[str]) -> Job:
    """A copy of ``job`` running other ``mip`` arguments."""
    return replace(job, args=args)


def _ignore_submitit_signal() -> None:
    """Runs in the child before ``mip`` starts: SLURM sends the preemption warning (USR2) to every process
    of the job, and its default action would kill ``mip`` before it checkpoints; the parent stops it."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def checkpointable(job: Job) -> MipCommand:
    """The submitit callable running ``job`` (checks that submitit is installed)."""
    _import_submitit()
    return MipCommand(job)


@dataclass
class SlurmHandle:
    """What ``submit`` returns: the grid job and its submitit job."""

    job: Job
    sjob: Any
    finished_at: float | None = None  # when SLURM first said the job ended (its result may lag)
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def job_id(self) -> str:
        return str(self.sjob.job_id)


class SlurmExecutor(Executor):
    """Runs grid jobs as SLURM jobs through submitit (or submitit's local/debug executors)."""

    def __init__(self, settings: Any) -> None:
        submitit = _import_submitit()
        self.settings = settings
        cluster = getattr(settings, "slurm_cluster", None)
        if cluster not in (None, "slurm", "local", "debug"):
            raise BadInputError(f"grid_settings.slurm_cluster must be null, slurm, local or debug, not {cluster!r}")
        if cluster in (None, "slurm") and not slurm_available():
            raise BadInputError("the slurm executor found no SLURM here (sbatch and a responding squeue are needed); "
                                "set grid_settings.slurm_cluster to 'local' to try the grid with submitit's "
                                "local executor")
        if cluster is None:
            cluster = submitit.AutoExecutor.which()
        self.cluster: str = cluster
        self._submitit = submitit
        self._queue: dict[str, str] = {}  # SLURM job id -> state, from the latest squeue
        self._queue_at = float("-inf")
        self._executors: dict[Path, Any] = {}

    # --- submitting ---------------------------------------------------------------------------

    def _executor(self, job: Job) -> Any:
        """The submitit executor of ``job``'s grid folder, its parameters set for ``job``'s resources."""
        folder = Path(job.workdir).resolve() / GRID_SLURM_DIR
        executor = self._executors.get(folder)
        if executor is None:
            executor = self._submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            self._executors[folder] = executor
        params: dict[str, Any] = {"timeout_min": int(self.settings.slurm_time_minutes),
                                  "cpus_per_task": max(1, int(job.threads)),
                                  "gpus_per_node": int(math.ceil(job.gpus)) if job.gpus > 0 else 0,
                                  "tasks_per_node": 1, "nodes": 1, "name": f"mip-{job.id}"}
        if self.cluster == "slurm":
            if self.settings.slurm_partition:
                params["slurm_partition"] = self.settings.slurm_partition
            # with gpus_per_node=0 submitit would still ask for --gpus-per-node=0, which some clusters refuse
            if not params["gpus_per_node"]:
                del params["gpus_per_node"]
        executor.update_parameters(**params)
        return executor

    def submit(self, job: Job) -> SlurmHandle:
        """Submit one job; returns its handle."""
        sjob = self._executor(job).submit(checkpointable(job))
        return SlurmHandle(job, sjob)

    def submit_many(self, jobs: list[Job]) -> list[SlurmHandle]:
        """Submit jobs as SLURM job arrays (one array per grid folder and resource shape); handles in order."""
        groups: dict[tuple[Path, int, float], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((Path(job.workdir).resolve(), job.threads, job.gpus), []).append(i)
        handles: list[SlurmHandle | None] = [None] * len(jobs)
        for indices in groups.values():
            executor = self._executor(jobs[indices[0]])
            executor.update_parameters(name=f"mip-array-{jobs[indices[0]].id}")
            with executor.batch():
                sjobs = [executor.submit(checkpointable(jobs[i])) for i in indices]
            for i, sjob in zip(indices, sjobs):
                handles[i] = SlurmHandle(jobs[i], sjob)
        return [h for h in handles if h is not None]

    # --- watching -----------------------------------------------------------------------------

    def _slurm_state(self, job_id: str, since: float) -> str | None:
        """The job's SLURM state from squeue (no accounting needed), None if squeue does not know it.

        One squeue answers for every job for 2 s, unless it predates the submission at ``since``.
        """
        if time.monotonic() - self._queue_at > 2.0 or (job_id not in self._queue and self._queue_at <= since):
            try:
                out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T"], capture_output=True,
                                     text=True, timeout=30, check=True).stdout
            except (OSError, subprocess.SubprocessError):
                return "UNKNOWN"  # controller busy or restarting: ask again later
            self._queue = dict(line.split("|", 1) for line in out.split() if "|" in line)
            self._queue_at = time.monotonic()
        return self._queue.get(job_id)

    def _state(self, handle: SlurmHandle) -> str:
        if self.cluster == "slurm":
            state = self._slurm_state(handle.job_id, handle.submitted_at)
            if state is not None:
                return state.upper()
            # gone from the controller's memory: ask accounting through submitit (may be disabled)
            try:
                return str(handle.sjob.get_info(mode="force").get("State") or "GONE").split()[0].upper()
            except Exception:  # noqa: BLE001 - sacct missing or refusing: the job is gone all the same
                return "GONE"
        if self.cluster == "debug":
            return "COMPLETED" if handle.sjob.done() else str(handle.sjob.state).upper()  # done() runs it
        return str(handle.sjob.state).upper()

    def poll(self, handle: SlurmHandle) -> JobResult | None:
        """None while the job is queued or running, then how it ended."""
        sjob = handle.sjob
        state = self._state(handle)
        # the debug executor ran the job in this process (in _state) and keeps its result in memory
        if self.cluster == "debug" and state == "COMPLETED":
            return self._outcome(handle, state)
        if sjob.paths.result_pickle.exists():
            if self.cluster == "slurm" and state not in TERMINAL_STATES and state != "GONE":
                # still completing (its final state, e.g. CANCELLED, tells how it ended), or requeued by
                # SLURM after a run that left a result: the next run will write a new one
                return None
            return self._outcome(handle, state)
        if state not in TERMINAL_STATES and state != "GONE":
            return None
        if state in ("COMPLETED", "FINISHED", "GONE"):
            # the result file is written before the job ends, but a shared filesystem may show it late
            handle.finished_at = handle.finished_at or time.monotonic()
            if time.monotonic() - handle.finished_at < RESULT_GRACE_S:
                return None
        error = f"SLURM job {handle.job_id} ended {state} without a result"
        detail = last_error_line(Path(handle.job.workdir) / handle.job.log) or last_error_line(sjob.paths.stderr)
        return JobResult(None, error + (f"; {detail}" if detail else ""))

    def _outcome(self, handle: SlurmHandle, state: str) -> JobResult:
        try:
            code = handle.sjob.result()
        except Exception as exc:  # noqa: BLE001 - submitit wraps whatever the job raised
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            return JobResult(None, f"SLURM job {handle.job_id} failed: {lines[-1] if lines else type(exc).__name__}")
        code = int(code) if code is not None else None
        error = None if code == 0 else last_error_line(Path(handle.job.workdir) / handle.job.log)
        if state in ("CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"):
            error = f"SLURM job {handle.job_id} {state}" + (f"; {error}" if error else "")
        return JobResult(code, error)

    def cancel(self, handle: SlurmHandle) -> None:
        """Cancel the job (``mip`` receives SIGTERM, writes its last checkpoint and stops)."""
        try:
            handle.sjob.cancel(check=False)
        except Exception:  # noqa: BLE001 - already finished or unknown to SLURM: nothing to cancel
            pass

    def close(self) -> None:
        """Nothing to release: submitted SLURM jobs belong to the cluster, and are cancelled by the runner."""


def slurm_available() -> bool:
    """Whether SLURM can take jobs from here: sbatch is installed and the controller answers squeue."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return False
    try:
        return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False

"""The Ray executor: each job a Ray task that runs its ``mip`` command on whichever node Ray picks.

With a shared filesystem the task runs the command in the grid folder itself. Without one, the driver
ships the job's inputs to the task as a tar.gz archive, the task runs the command in a fresh temporary
folder, and sends back the job's output folders and its log, which ``poll`` merges into the grid folder.
"""

from __future__ import annotations

import ctypes
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from miprometheus.errors import BadInputError
from miprometheus.workers.grid.executors.base import Executor, Job, JobResult, killed_by, last_error_line

#: seconds a cancelled or terminated command has to write its checkpoint and exit before it is killed
DEFAULT_CANCEL_GRACE_S = 30.0

#: seconds to wait for a TCP connection to a Ray cluster's address before calling it unreachable
CONNECT_TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------------------------- archives


def _relative_member(name: str) -> PurePosixPath:
    """A path of an archive (or a job) checked to stay inside its root: no absolute path, no ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts:
        raise BadInputError(f"unsafe path {name!r}: paths shipped between Ray nodes must be relative to the "
                            "grid folder and must not contain '..'")
    return path


def pack_paths(root: Path | str, paths: list[str]) -> bytes:
    """Pack files and folders (paths relative to ``root``) into tar.gz bytes; missing paths are skipped.

    Only regular files and folders travel: links could point outside the folder they are unpacked in.
    """
    root = Path(root)
    buffer = io.BytesIO()

    def regular_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return info if info.isfile() or info.isdir() else None

    # compresslevel 1: checkpoints barely compress, and the time is spent on every job
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name in paths:
            relative = _relative_member(name)
            source = root / relative
            if not source.exists() or source.is_symlink():
                continue
            archive.add(source, arcname=relative.as_posix(), recursive=True, filter=regular_only)
    return buffer.getvalue()


def unpack_archive(data: bytes, root: Path | str) -> list[str]:
    """Unpack tar.gz bytes into ``root``, merging into existing folders; returns the member names.

    Refuses (BadInputError) absolute paths, ``..`` members, links and devices, before writing anything.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            _relative_member(member.name)
            if not (member.isfile() or member.isdir()):
                raise BadInputError(f"unsafe archive member {member.name!r}: only files and folders are unpacked")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second, independent check
            archive.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - older Pythons; the members were checked above
            archive.extractall(root, members=members)
    return [m.name for m in members]


# ------------------------------------------------------------------------------------ the task on a node


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec function that makes the child receive SIGTERM when the Ray worker running it dies (Linux).

    Without it, a worker killed by ``ray.cancel(force=True)`` or a crash would leave its command running.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_parent_death_signal


@dataclass
class _Supervisor:
    """Waits for a command, forwarding cancellation (KeyboardInterrupt) and SIGTERM to it as SIGTERM."""

    process: subprocess.Popen
    grace_s: float
    stopped_by: str | None = None  # "cancel" or "SIGTERM" once the command was asked to stop
    deadline: float | None = None

    def stop(self, why: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = why
            self.deadline = time.monotonic() + self.grace_s
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the trainer writes its last checkpoint, then exits

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop("SIGTERM")

    def wait(self) -> int:
        while True:
            try:
                return self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    self.process.kill()
            except KeyboardInterrupt:  # how ray.cancel(force=False) reaches a running task
                self.stop("cancel")


def _run_command(job: Job, cwd: Path, log_path: Path, grace_s: float) -> tuple[int, str | None]:
    """Run the job's command in ``cwd``, its output appended to ``log_path``; returns (exit code, stop reason)."""
    import ray

    if job.gpus > 0:  # Ray sets CUDA_VISIBLE_DEVICES in the worker; fall back on the ids it assigned
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(str(g) for g in ray.get_gpu_ids())
    else:
        gpus = ""  # a CPU job sees no GPU, as with the local executor
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(job.command(), cwd=cwd, env=job.environment({"CUDA_VISIBLE_DEVICES": gpus}),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent())  # only calls prctl
    supervisor = _Supervisor(process, grace_s)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    except ValueError:  # not the main thread: the parent-death signal still stops the command
        pass
    try:
        code = supervisor.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if previous is not None:
            # the worker is reused by later tasks: give it back its own handler
            signal.signal(signal.SIGTERM, previous)
    if supervisor.stopped_by == "SIGTERM" and callable(previous):
        previous(signal.SIGTERM, None)  # the worker itself was asked to stop: let it (the node is going away)
    return code, supervisor.stopped_by


def run_job_task(job: Job, archive: bytes | None, shared: bool, grace_s: float) -> dict[str, Any]:
    """The body of the Ray task: run one job on this node and return its exit code, results and log.

    ``shared``: the grid folder is visible here, run in it. Otherwise unpack ``archive`` (the inputs) in a
    temporary folder, run there, and return the outputs and the log as bytes.
    """
    import ray

    node = ray.get_runtime_context().get_node_id()
    if shared:
        code, stopped = _run_command(job, Path(job.workdir), Path(job.workdir) / job.log, grace_s)
        return {"exit_code": code, "stopped": stopped, "node": node, "archive": None, "log": None}
    scratch = Path(tempfile.mkdtemp(prefix="mip-ray-"))
    try:
        work = scratch / "work"
        work.mkdir()
        if archive:
            unpack_archive(archive, work)
        for output in job.outputs:  # as in the grid folder: the command may expect its parents to exist
            (work / _relative_member(output)).parent.mkdir(parents=True, exist_ok=True)
        log_path = scratch / "job.log"
        code, stopped = _run_command(job, work, log_path, grace_s)
        results = pack_paths(work, job.outputs)
        log = log_path.read_bytes() if log_path.exists() else b""
        return {"exit_code": code, "stopped": stopped, "node": node, "archive": results, "log": log}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the driver


@dataclass
class RayHandle:
    """A submitted job: the job and the Ray object reference of its task's result."""

    job: Job
    ref: Any
    submitted: float = field(default_factory=time.time)
    result: JobResult | None = None  # kept: polling again must not unpack the results twice


def _check_reachable(address: str) -> None:
    """Fail fast, with a clear message, when a ``host:port`` address does not accept connections.

    (``ray.init`` itself retries for a long time before giving up on an unreachable cluster.)
    """
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BadInputError(f"grid_settings.ray_address {address!r} is not host:port, 'auto' or null")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address} ({exc}); start it with `ray start --head` "
                            "or fix grid_settings.ray_address") from exc


def _describe(exc: BaseException) -> str:
    """One line that says why a Ray task was lost, for the manifest and the grid summary."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # a RayTaskError's text is a traceback: its last line is the error; other errors lead with it
    line = lines[-1] if lines and "Traceback" in str(exc) else (lines[0] if lines else "")
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__)[:500]


class RayExecutor(Executor):
    """Runs each job as a Ray task on a Ray cluster (a local one when ``ray_address`` is null)."""

    def __init__(self, settings: Any, cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S) -> None:
        try:
            import ray
        except ImportError as exc:
            raise BadInputError("the ray executor needs Ray: pip install miprometheus[ray]") from exc
        self.ray = ray
        self.shared = bool(getattr(settings, "ray_shared_filesystem", False))
        self.cancel_grace_s = cancel_grace_s
        self.address: str | None = getattr(settings, "ray_address", None)
        self.running: dict[int, RayHandle] = {}
        #: job id -> id of the Ray node its last attempt ran on
        self.nodes: dict[str, str] = {}
        self.owns_ray = False  # whether close() must shut Ray down (this executor called ray.init)
        if not ray.is_initialized():
            self._init_ray()
            self.owns_ray = True
        # max_retries=0: the grid runner retries failed jobs itself, and counts the attempts
        self.task = ray.remote(max_retries=0)(run_job_task)

    def _init_ray(self) -> None:
        ray = self.ray
        address = self.address
        if address not in (None, "auto", "local"):
            _check_reachable(address)
        try:
            if address is None:
                # "local": a new Ray for this grid, even when RAY_ADDRESS or a `ray start` cluster exists
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (connection, auth, version mismatch)
            raise BadInputError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc

    def submit(self, job: Job) -> RayHandle:
        archive = None if self.shared else pack_paths(job.workdir, job.inputs)
        try:
            task = self.task.options(num_cpus=job.threads, num_gpus=job.gpus, name=f"mip:{job.id}")
            ref = task.remote(job, archive, self.shared, self.cancel_grace_s)
        except ValueError as exc:  # e.g. 1.5 GPUs: Ray takes fractions of one GPU or whole GPUs
            raise BadInputError(f"job {job.id}: Ray cannot schedule {job.threads} CPUs and {job.gpus} GPUs: "
                                f"{exc}") from exc
        handle = RayHandle(job, ref)
        self.running[id(handle)] = handle
        return handle

    def poll(self, handle: RayHandle) -> JobResult | None:
        if handle.result is None:
            ready, _ = self.ray.wait([handle.ref], timeout=0)
            if not ready:
                return None
            self.running.pop(id(handle), None)
            handle.result = self._collect(handle)
        return handle.result

    def _collect(self, handle: RayHandle) -> JobResult:
        """Fetch a finished task's result: bring its outputs and log home, and say how the job ended."""
        job = handle.job
        log_path = Path(job.workdir) / job.log
        try:
            payload = self.ray.get(handle.ref)
        except Exception as exc:  # noqa: BLE001 - the task, its worker or its node was lost: the runner retries
            error = _describe(exc)
            self._append_log(log_path, f"\n[mip grid] Ray task lost: {error}\n".encode())
            return JobResult(None, error)
        if payload.get("node"):
            self.nodes[job.id] = payload["node"]
        if payload.get("log"):
            self._append_log(log_path, payload["log"])
        if payload.get("archive"):
            try:
                unpack_archive(payload["archive"], job.workdir)
            except (BadInputError, OSError, tarfile.TarError) as exc:
                return JobResult(None, f"the results of job {job.id} could not be unpacked: {exc}")
        code = payload["exit_code"]
        if code == 0:
            return JobResult(0, None)
        error = last_error_line(log_path)
        if code < 0:
            error = killed_by(code, error)
        if payload.get("stopped"):
            error = f"stopped ({payload['stopped']})" + (f"; {error}" if error else "")
        return JobResult(code, error)

    @staticmethod
    def _append_log(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as log:
            log.write(data)

    def cancel(self, handle: RayHandle) -> None:
        self._cancel([handle])

    def _cancel(self, handles: list[RayHandle]) -> None:
        """Ask the tasks to stop (their commands get SIGTERM and may checkpoint), then force the stragglers."""
        ray = self.ray
        refs = [h.ref for h in handles]
        pending = []
        for ref in refs:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                pending.append(ref)
                ray.cancel(ref, force=False)
        if not pending:
            return
        # the task waits grace_s for its command after SIGTERM; a little more for packing the results
        _, stragglers = ray.wait(pending, num_returns=len(pending), timeout=self.cancel_grace_s + 15)
        for ref in stragglers:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or lost: nothing left to stop
                pass

    def close(self) -> None:
        if self.running:
            self._cancel(list(self.running.values()))
            self.running.clear()
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.owns_ray = False

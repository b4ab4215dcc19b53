"""The SLURM executor: submitit's local executor always, a real SLURM (``.ci/slurm_setup.sh``) when one answers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from miprometheus.errors import BadInputError  # noqa: E402
from miprometheus.workers.grid.executors import slurm as slurm_module  # noqa: E402
from miprometheus.workers.grid.executors.base import Job, JobResult  # noqa: E402
from miprometheus.workers.grid.executors.slurm import (  # noqa: E402
    MipCommand,
    SlurmExecutor,
    resume_args,
)
from miprometheus.workers.grid.folders import newest_experiment  # noqa: E402
from miprometheus.workers.grid.spec import GridSettings  # noqa: E402
from tests.conftest import TINY_SERIAL, experiment_dirs, wait_job  # noqa: E402

#: a training long enough (tens of seconds) to be stopped halfway
LONG = "training.terminal_conditions.episode_limit=4000"


def train_job(name: str, grid: Path, *extra: str) -> Job:
    """The grid job training TINY_SERIAL into experiments/<name>."""
    return Job(id=name, args=["train", "tiny.yaml", *extra, "--expdir", f"experiments/{name}", "--no-progress"],
               workdir=grid, inputs=["tiny.yaml"], outputs=[f"experiments/{name}"], log=f"logs/{name}.log", threads=1)


def wait(executor: SlurmExecutor, handle: object, timeout: float = 60) -> JobResult:
    """Poll a job until it ends."""
    return wait_job(executor, handle, timeout, interval=0.3)


def wait_for_training(grid: Path, name: str, episodes: int = 100, timeout: float = 60) -> Path:
    """The experiment folder of a running training, once it trained ``episodes`` episodes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folder = newest_experiment(grid / "experiments" / name)
        stats = folder / "training_statistics.csv" if folder else None
        if stats is not None and stats.exists() and len(stats.read_text().splitlines()) > episodes:
            return folder
        time.sleep(0.2)
    raise AssertionError(f"training {name} did not reach {episodes} episodes in {timeout} s")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid folder holding the tiny experiment config."""
    folder = tmp_path_factory.mktemp("grid")
    (folder / "tiny.yaml").write_text(TINY_SERIAL)
    return folder


@pytest.fixture(scope="module")
def local() -> SlurmExecutor:
    """The SLURM executor on submitit's local executor (no SLURM needed)."""
    executor = SlurmExecutor(GridSettings(executor="slurm", slurm_cluster="local", slurm_time_minutes=10))
    yield executor
    executor.close()


def slurm_answers() -> str | None:
    """Why the real-SLURM tests cannot run here, or None when sbatch exists and sinfo answers."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM here (sbatch/sinfo not installed; see .ci/slurm_setup.sh)"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo does not answer: {exc}"
    if answer.returncode != 0 or not answer.stdout.strip():
        return f"sinfo does not answer: {answer.stderr.strip() or 'no nodes'}"
    return None


NO_SLURM = slurm_answers()  # asked once: a dead controller makes sinfo slow to give up
needs_slurm = pytest.mark.skipif(NO_SLURM is not None, reason=str(NO_SLURM))


# --- submitit's local executor ------------------------------------------------------------------


@pytest.mark.slow
def test_local_trains(grid: Path, local: SlurmExecutor) -> None:
    handle = local.submit(train_job("e1", grid))
    assert wait(local, handle) == JobResult(0, None)
    assert len(experiment_dirs(grid / "experiments" / "e1")) == 1
    assert "episode" in (grid / "logs" / "e1.log").read_text()
    assert list((grid / "slurm").glob("*_submitted.pkl"))  # submitit's files stay in <grid>/slurm


@pytest.mark.slow
def test_checkpoint_resumes_the_experiment(grid: Path, local: SlurmExecutor) -> None:
    """What submitit requeues on preemption: the same experiment, resumed from models/model_last.pt."""
    folder = newest_experiment(grid / "experiments" / "e1")
    if folder is None:  # run alone: train it first
        assert wait(local, local.submit(train_job("e1", grid))).exit_code == 0
        folder = newest_experiment(grid / "experiments" / "e1")
    assert (folder / "models" / "model_last.pt").is_file()
    delayed = MipCommand(train_job("e1", grid, "--device", "cpu")).checkpoint()
    resumed = delayed.function
    assert isinstance(resumed, MipCommand)
    relative = str(folder.relative_to(grid))
    assert resumed.job.args == ["train", "--resume", relative, "--device", "cpu", "--no-progress"]
    assert resumed.command()[2:6] == ["miprometheus", "train", "--resume", relative]
    # a resumed run resumes the same folder again; a job with no checkpoint yet starts over
    assert resume_args(resumed.job) == resumed.job.args
    fresh = train_job("never_ran", grid)
    assert MipCommand(fresh).checkpoint().function.job.args == fresh.args


def test_resume_args_know_every_valued_flag_of_the_cli(tmp_path: Path) -> None:
    """The flags with a value come from `mip train`'s parser: --visualize 2 keeps its value (a copy forgot it)."""
    folder = tmp_path / "experiments" / "x" / "SerialRecall" / "LSTM" / "20261128_053400"
    (folder / "models").mkdir(parents=True)
    (folder / "training_configuration.yaml").write_text("{}\n")
    (folder / "models" / "model_last.pt").write_bytes(b"")
    job = Job(id="x", args=["train", "tiny.yaml", "--expdir", "experiments/x", "--visualize", "2", "--log-level",
                            "DEBUG", "--tensorboard=1", "--savetag=t", "model.hidden_size=8", "--no-progress"],
              workdir=tmp_path, log="logs/x.log", outputs=["experiments/x"])
    assert resume_args(job) == ["train", "--resume", str(folder.relative_to(tmp_path)), "--visualize", "2",
                                "--log-level", "DEBUG", "--tensorboard=1", "--no-progress"]


@pytest.mark.slow
def test_local_failure_is_reported(grid: Path, local: SlurmExecutor) -> None:
    (grid / "bad.yaml").write_text(TINY_SERIAL.replace("name: LSTM", "name: NoSuchModel"))
    job = train_job("bad", grid)
    job.args[1] = "bad.yaml"
    result = wait(local, local.submit(job))
    assert result.exit_code == 2
    assert result.error and "invalid configuration" in result.error
    assert "NoSuchModel" in (grid / "logs" / "bad.log").read_text()


@pytest.mark.slow
def test_local_cancel(grid: Path, local: SlurmExecutor) -> None:
    handle = local.submit(train_job("cancelled", grid, LONG))
    wait_for_training(grid, "cancelled", episodes=20)
    local.cancel(handle)
    result = wait(local, handle, timeout=90)  # a loaded machine: writing the last checkpoint can take a while
    assert result.exit_code != 0 and result.error
    # mip itself was asked to stop (it writes its last checkpoint), it does not train on
    deadline = time.monotonic() + 20
    while "received SIGTERM" not in (grid / "logs" / "cancelled.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "received SIGTERM" in (grid / "logs" / "cancelled.log").read_text()


@pytest.mark.slow
def test_local_job_array(grid: Path, local: SlurmExecutor) -> None:
    handles = local.submit_many([train_job("l0", grid), train_job("l1", grid)])
    assert [h.job.id for h in handles] == ["l0", "l1"]
    assert [wait(local, h) for h in handles] == [JobResult(0, None)] * 2


def test_no_slurm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm_module.shutil, "which", lambda name: None)
    with pytest.raises(BadInputError, match="no SLURM"):
        SlurmExecutor(GridSettings(executor="slurm", slurm_cluster="slurm"))
    with pytest.raises(BadInputError, match="slurm_cluster"):
        SlurmExecutor(GridSettings(executor="slurm", slurm_cluster="moon"))


@pytest.mark.slow
def test_local_preemption_requeues_and_resumes(grid: Path, local: SlurmExecutor) -> None:
    """USR2 (SLURM's warning before preemption/timeout) to the job: mip stops, the job comes back resumed."""
    handle = local.submit(train_job("preempted", grid, LONG.replace("4000", "600")))
    folder = wait_for_training(grid, "preempted", episodes=100)
    controller = handle.sjob._process.pid
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(children) == 1  # the submitit process running MipCommand
    subprocess.run(["kill", f"-{signal.SIGUSR2.name[3:]}", children[0]], check=True)
    assert wait(local, handle, timeout=90) == JobResult(0, None)
    log = (grid / "logs" / "preempted.log").read_text()
    assert "received SIGTERM" in log and "episode limit 600 reached" in log
    assert experiment_dirs(grid / "experiments" / "preempted") == [folder]  # resumed, not started over
    assert "Calling checkpoint method" in "".join(p.read_text() for p in (grid / "slurm").glob("*_log.out"))


# --- a real SLURM -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm() -> SlurmExecutor:
    """The SLURM executor on the real cluster."""
    return SlurmExecutor(GridSettings(executor="slurm", slurm_cluster="slurm", slurm_time_minutes=10))


@pytest.mark.slow
@needs_slurm
def test_slurm_trains(grid: Path, slurm: SlurmExecutor) -> None:
    handle = slurm.submit(train_job("s1", grid))
    assert wait(slurm, handle, timeout=120) == JobResult(0, None)
    assert len(experiment_dirs(grid / "experiments" / "s1")) == 1
    assert (grid / "slurm" / f"{handle.job_id}_submission.sh").is_file()


@pytest.mark.slow
@needs_slurm
def test_slurm_job_array(grid: Path, slurm: SlurmExecutor) -> None:
    handles = slurm.submit_many([train_job("a0", grid), train_job("a1", grid)])
    assert [h.job.id for h in handles] == ["a0", "a1"]
    assert handles[0].job_id.split("_")[0] == handles[1].job_id.split("_")[0]  # one array, two tasks
    assert [wait(slurm, h, timeout=120) for h in handles] == [JobResult(0, None)] * 2
    assert all(len(experiment_dirs(grid / "experiments" / n)) == 1 for n in ("a0", "a1"))


@pytest.mark.slow
@needs_slurm
def test_slurm_cancel(grid: Path, slurm: SlurmExecutor) -> None:
    handle = slurm.submit(train_job("sc", grid, LONG))
    wait_for_training(grid, "sc", episodes=20)
    slurm.cancel(handle)
    result = wait(slurm, handle, timeout=60)
    assert result.exit_code != 0 and result.error and "CANCELLED" in result.error


@pytest.mark.slow
@needs_slurm
@pytest.mark.xfail(strict=False, reason="intermittent here: after the requeue, SLURM's restart of the job sometimes "
                   "ends FAILED at once (Restarts=1, ExitCode=1) with no output; the checkpoint/requeue/resume logic "
                   "itself is covered by test_local_preemption_requeues_and_resumes")
def test_slurm_preemption_requeues_and_resumes(grid: Path, slurm: SlurmExecutor) -> None:
    handle = slurm.submit(train_job("sp", grid, LONG.replace("4000", "600")))
    folder = wait_for_training(grid, "sp", episodes=100)
    handle.sjob._interrupt()  # what SLURM sends on preemption: SIGTERM, then USR2
    deadline = time.monotonic() + 30
    while "Requeued job" not in "".join(p.read_text() for p in (grid / "slurm").glob(f"{handle.job_id}_*_log.out")):
        assert time.monotonic() < deadline, "the job was not requeued"
        time.sleep(0.3)
    # SLURM holds a requeued job back for a couple of minutes: let it start now
    for _ in range(20):
        if subprocess.run(["scontrol", "update", f"JobId={handle.job_id}", "StartTime=now"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.3)
    assert wait(slurm, handle, timeout=60) == JobResult(0, None)
    log = (grid / "logs" / "sp.log").read_text()
    assert "received SIGTERM" in log and "episode limit 600 reached" in log
    assert experiment_dirs(grid / "experiments" / "sp") == [folder]


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["local", pytest.param("slurm", marks=needs_slurm)])
def test_a_whole_grid_through_the_slurm_executor(tmp_path: Path, cluster: str) -> None:
    from miprometheus.workers.grid.manifest import Manifest
    from miprometheus.workers.grid.runner import train_grid

    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    (tmp_path / "grid.yaml").write_text(f"""
grid_tasks: [{{default_configs: tiny.yaml}}]
grid_overwrite: {{training: {{terminal_conditions: {{episode_limit: 30}}}}}}
grid_settings: {{experiment_repetitions: 2, max_concurrent_runs: 2, cpus_per_experiment: 1,
                executor: slurm, slurm_cluster: {cluster}}}
""")
    manifest = train_grid(tmp_path / "grid.yaml", [], tmp_path / "exp", progress=False)
    assert manifest.counts() == {"done": 2}, [(r.id, r.last_error) for r in manifest.records]
    again = Manifest.load(manifest.folder)
    assert all((manifest.folder / r.folder / "models" / "model_best.pt").is_file() for r in again.records)
    assert len(list((manifest.folder / "slurm").glob("*"))) > 0  # submitit's files stay in the grid folder


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["local", pytest.param("slurm", marks=needs_slurm)])
def test_a_search_through_the_slurm_executor(tmp_path: Path, cluster: str) -> None:
    """The grid process owns the studies; SLURM runs the trials (a job array when several are ready)."""
    from miprometheus.workers.grid.manifest import REEVALUATION, SEARCH
    from miprometheus.workers.grid.runner import test_grid, train_grid

    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    (tmp_path / "grid.yaml").write_text(f"""
grid_tasks: [{{name: lstm, default_configs: tiny.yaml}}]
grid_overwrite: {{training: {{terminal_conditions: {{episode_limit: 40}}}}}}
grid_settings:
  max_concurrent_runs: 2
  cpus_per_experiment: 1
  executor: slurm
  slurm_cluster: {cluster}
  seed: 3
  search:
    space: {{training.optimizer.lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}}}
    trials: 4
    reevaluate: {{top: 1, seeds: 2}}
""")
    manifest = train_grid(tmp_path / "grid.yaml", [], tmp_path / "exp", progress=False)
    assert manifest.counts() == {"done": 6}, [(r.id, r.last_error) for r in manifest.records]
    assert sorted(r.trial for r in manifest.records if r.phase == SEARCH) == [0, 1, 2, 3]
    assert all(r.search_state in ("done", "pruned") for r in manifest.records if r.phase == SEARCH)
    tested = test_grid(manifest.folder, progress=False)
    assert [r.test_status for r in tested.records if r.phase == REEVALUATION] == ["done", "done"]

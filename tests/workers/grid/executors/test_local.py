"""Grids on the local executor: planning, precedence, manifest, failures, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from miprometheus.errors import ConfigError
from miprometheus.statistics import read_csv
from miprometheus.workers.grid.executors.base import Job, signal_name
from miprometheus.workers.grid.executors.local import GPUTokens, LocalExecutor
from miprometheus.workers.grid.manifest import Manifest
from miprometheus.workers.grid.runner import create_grid
from miprometheus.workers.grid.spec import load_grid
from tests.conftest import TINY_SERIAL, run_mip, wait_job

TASK = TINY_SERIAL.replace("seed: 7", "seed: -1").replace("episode_limit: 60", "episode_limit: 40")


def grid_file(tmp_path: Path, settings: str = "", tasks: str | None = None, overwrite: str = "") -> Path:
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "serial.yaml").write_text(TASK)
    (tmp_path / "tasks" / "reverse.yaml").write_text(
        "default_configs: serial.yaml\ntraining: {problem: {name: ReverseRecall}}\n"
        "validation: {problem: {name: ReverseRecall}}\ntesting: {problem: {name: ReverseRecall}}\n")
    path = tmp_path / "grid.yaml"
    path.write_text((tasks or """grid_tasks:
  - default_configs: tasks/serial.yaml
  - default_configs: tasks/reverse.yaml
    overwrite: {model.hidden_size: 8}
""") + overwrite + "grid_settings:\n" + (settings or "  experiment_repetitions: 2\n  max_concurrent_runs: 2\n"))
    return path


def grid_folders(expdir: Path) -> list[Path]:
    return sorted(p.parent for p in expdir.rglob("manifest.json"))


def test_plan_precedence_sweep_and_seeds(tmp_path):
    path = grid_file(tmp_path, settings="""  experiment_repetitions: 2
  sweep: {training.optimizer.lr: [0.01, 0.001]}
""", overwrite="""grid_overwrite:
  model: {hidden_size: 12}
  training: {terminal_conditions: {episode_limit: 5}}
""")
    spec = load_grid(path)
    assert len(spec.experiments) == 2 * 2 * 2  # tasks x sweep x repetitions
    by_task = {}
    for e in spec.experiments:
        by_task.setdefault(e.task, []).append(e)
    # precedence: task overwrite (8) > grid_overwrite (12) > task config (16)
    assert {e.config["model"]["hidden_size"] for e in by_task["serial"]} == {12}
    assert {e.config["model"]["hidden_size"] for e in by_task["reverse"]} == {8}
    assert {e.config["training"]["terminal_conditions"]["episode_limit"] for e in spec.experiments} == {5}
    assert sorted({e.config["training"]["optimizer"]["lr"] for e in spec.experiments}) == [0.001, 0.01]
    seeds = [e.seed for e in spec.experiments]
    assert len(set(seeds)) == len(seeds)  # repetitions get distinct seeds
    assert all(e.config["training"]["seed"] == e.seed for e in spec.experiments)
    assert len({e.id for e in spec.experiments}) == len(spec.experiments)


def test_a_seed_fixed_in_a_task_config_is_kept(tmp_path):
    path = grid_file(tmp_path, overwrite="grid_overwrite: {training: {seed: 1234}}\n")
    assert {e.seed for e in load_grid(path).experiments} == {1234}


def test_an_experiment_key_on_the_command_line_is_a_grid_overwrite_of_every_task(tmp_path):
    spec = load_grid(grid_file(tmp_path), ["model.hidden_size=5", "training.problem.size=96",
                                           "grid_settings.experiment_repetitions=1"])
    # the saved grid file records it, and a task's own overwrite still wins (precedence of grid_overwrite)
    assert spec.raw["grid_overwrite"] == {"model": {"hidden_size": 5}, "training": {"problem": {"size": 96}}}
    assert {e.task: e.config["model"]["hidden_size"] for e in spec.experiments} == {"serial": 5, "reverse": 8}
    assert {e.config["training"]["problem"]["size"] for e in spec.experiments} == {96}


def test_a_data_folder_on_the_command_line_reaches_every_split_of_the_vision_grids(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[4] / "configs" / "grids"
    monkeypatch.chdir(tmp_path)  # a relative folder is relative to the working directory, as for `mip train`
    for name in ("vision_suite.yaml", "vision_tuned.yaml"):
        spec = load_grid(root / name, ["training.problem.data_folder=mnist"])
        folders = {e.config[split]["problem"]["data_folder"] for e in spec.experiments
                   for split in ("training", "validation", "testing")}
        assert folders == {str(tmp_path / "mnist")}, name


def test_bad_grid_file_names_file_line_and_suggestion(tmp_path):
    path = grid_file(tmp_path, settings="  experiment_repetitons: 2\n")
    with pytest.raises(ConfigError) as error:
        load_grid(path)
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "experiment_repetitons" in row)
    assert f"{path}:{line}" in str(error.value) and "grid_settings.experiment_repetitions" in str(error.value)
    result = run_mip("grid", "train", path, "--expdir", tmp_path / "exp")
    assert result.returncode == 2 and "did you mean" in result.stderr.lower()
    assert not (tmp_path / "exp").exists()


def test_invalid_task_config_is_reported_before_anything_runs(tmp_path):
    path = grid_file(tmp_path, overwrite="grid_overwrite: {training: {optimizer: {lrr: 1}}}\n")
    result = run_mip("grid", "train", path, "--expdir", tmp_path / "exp")
    assert result.returncode == 2
    assert "invalid task configs (nothing was run)" in result.stderr and "training.optimizer.lr" in result.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_grid_trains_tests_and_records_everything(tmp_path):
    path = grid_file(tmp_path)
    result = run_mip("grid", "train", path, "--expdir", tmp_path / "exp", timeout=600)
    assert result.returncode == 0, result.stderr
    folder = grid_folders(tmp_path / "exp")[0]
    manifest = Manifest.load(folder)
    assert len(manifest.records) == 4 and manifest.counts() == {"done": 4}
    for record in manifest.records:
        experiment = folder / record.folder
        assert len(read_csv(experiment / "training_statistics.csv")) == 40
        info = json.loads((experiment / "run_info.json").read_text())
        assert info["seed"] == record.seed and record.attempts == 1 and record.exit_code == 0
        assert (folder / record.log).is_file()
        saved = yaml.safe_load((folder / record.config).read_text())
        assert saved["training"]["seed"] == record.seed
    assert (folder / "grid_configuration.yaml").is_file()
    tested = run_mip("grid", "test", folder, timeout=600)
    assert tested.returncode == 0, tested.stderr
    manifest = Manifest.load(folder)
    assert manifest.counts("test_status") == {"done": 4}
    assert all((folder / r.test_folder / "testing_set_agg_statistics.csv").is_file() for r in manifest.records)
    again = run_mip("grid", "train", "--resume", folder)  # nothing left to do
    assert again.returncode == 0 and "started" not in again.stderr


@pytest.mark.slow
def test_a_crashing_task_does_not_stop_the_others(tmp_path):
    (tmp_path / "tasks").mkdir()
    path = grid_file(tmp_path, tasks="""grid_tasks:
  - default_configs: tasks/serial.yaml
  - name: exploding
    default_configs: tasks/serial.yaml
    overwrite: {training.optimizer: {name: Adam, lr: 0.01, eps: 0}}  # 0/0 in Adam's first step: the loss is NaN
  - name: nodata
    default_configs: tasks/mnist.yaml
""", settings="  retries: 1\n  max_concurrent_runs: 2\n")
    (tmp_path / "tasks" / "mnist.yaml").write_text(f"""
training:
  problem: {{name: MNIST, data_folder: {tmp_path}/missing, download: false}}
  terminal_conditions: {{epoch_limit: 1}}
model: {{name: LeNet5}}
""")
    result = run_mip("grid", "train", path, "--expdir", tmp_path / "exp", timeout=600)
    assert result.returncode == 1
    folder = grid_folders(tmp_path / "exp")[0]
    records = {r.task: r for r in Manifest.load(folder).records}
    assert records["serial"].status == "done"
    exploding = records["exploding"]
    assert exploding.status == "failed" and exploding.exit_code == 1 and exploding.attempts == 2  # retried once
    assert "nan" in (exploding.last_error or "").lower()
    nodata = records["nodata"]
    assert nodata.status == "failed" and nodata.exit_code == 2 and nodata.attempts == 1  # bad input: no retry
    assert "t10k-images" in nodata.last_error or "train-images" in nodata.last_error
    assert f"FAILED {nodata.id}" in result.stdout and str(folder / nodata.log) in result.stdout


def _wait(predicate, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _statuses(expdir: Path) -> dict[str, int]:
    folders = grid_folders(expdir)
    if not folders:
        return {}
    try:
        return Manifest.load(folders[0]).counts()
    except ConfigError:
        return {}


@pytest.mark.slow
def test_sigkill_of_the_grid_then_resume_runs_each_experiment_once(tmp_path):
    path = grid_file(tmp_path, settings="  experiment_repetitions: 3\n  max_concurrent_runs: 2\n",
                     overwrite="grid_overwrite: {training: {terminal_conditions: {episode_limit: 150}, "
                               "checkpoint_interval: 10}}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    grid = subprocess.Popen([sys.executable, "-m", "miprometheus", "grid", "train", str(path), "--expdir",
                             str(tmp_path / "exp"), "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait(lambda: _statuses(tmp_path / "exp").get("done", 0) >= 1 and _statuses(tmp_path / "exp").get("running"))
    grid.send_signal(signal.SIGKILL)
    grid.wait()
    folder = grid_folders(tmp_path / "exp")[0]
    before = Manifest.load(folder)
    finished = {r.id: (folder / r.folder / "run_info.json").stat().st_mtime
                for r in before.records if r.status == "done"}
    assert 1 <= len(finished) < 6
    result = run_mip("grid", "train", "--resume", folder, timeout=600)
    assert result.returncode == 0, result.stderr
    after = Manifest.load(folder)
    assert after.counts() == {"done": 6}
    experiment_folders = sorted(folder.glob("experiments/*/*/*/*/training_configuration.yaml"))
    assert len(experiment_folders) == 6  # experiments run in total = experiments in the grid
    for record in after.records:
        rows = read_csv(folder / record.folder / "training_statistics.csv")
        assert [int(r["episode"]) for r in rows] == list(range(1, 151))  # nothing lost, nothing counted twice
        if record.id in finished:  # finished experiments are not run again
            assert (folder / record.folder / "run_info.json").stat().st_mtime == finished[record.id]


@pytest.mark.slow
def test_a_killed_child_is_retried_from_its_checkpoint(tmp_path):
    path = grid_file(tmp_path, tasks="grid_tasks:\n  - default_configs: tasks/serial.yaml\n",
                     settings="  retries: 1\n",
                     overwrite="grid_overwrite: {training: {terminal_conditions: {episode_limit: 300}, "
                               "checkpoint_interval: 10}}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    grid = subprocess.Popen([sys.executable, "-m", "miprometheus", "grid", "train", str(path), "--expdir",
                             str(tmp_path / "exp"), "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def child_has_progress() -> bool:
        rows = list((tmp_path / "exp").glob("grid_*/experiments/*/*/*/*/training_statistics.csv"))
        return bool(rows) and rows[0].read_text().count("\n") > 30

    _wait(child_has_progress)
    pid = Manifest.load(grid_folders(tmp_path / "exp")[0]).records[0].extra["train_pid"]
    os.kill(pid, signal.SIGKILL)
    out, err = grid.communicate(timeout=300)
    assert grid.returncode == 0, err
    record = Manifest.load(grid_folders(tmp_path / "exp")[0]).records[0]
    assert record.status == "done" and record.attempts == 2
    experiment = grid_folders(tmp_path / "exp")[0] / record.folder
    info = json.loads((experiment / "run_info.json").read_text())
    assert len(info["resumes"]) == 1 and info["resumes"][0]["from_episode"] >= 10
    assert [int(r["episode"]) for r in read_csv(experiment / "training_statistics.csv")] == list(range(1, 301))


def test_two_grids_in_the_same_second_do_not_collide(tmp_path):
    spec = load_grid(grid_file(tmp_path))
    first = create_grid(spec, tmp_path / "exp")
    second = create_grid(spec, tmp_path / "exp")
    assert first.folder != second.folder and len(grid_folders(tmp_path / "exp")) == 2


def test_gpu_tokens_whole_and_fractional():
    tokens = GPUTokens(["0", "1"])
    assert tokens.take(1) == ["0"] and tokens.take(0.5) == ["1"] and tokens.take(0.5) == ["1"]
    assert tokens.take(0.5) is None and tokens.take(1) is None
    tokens.give_back(["1"], 0.5)
    assert tokens.take(0.5) == ["1"]
    tokens.give_back(["0"], 1)
    assert tokens.take(2) is None and tokens.take(1) == ["0"]


def test_each_child_gets_its_own_gpu_and_threads(tmp_path, monkeypatch):
    monkeypatch.setattr("miprometheus.workers.grid.executors.local.visible_gpus", lambda: ["3", "5"])
    executor = LocalExecutor()
    script = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    handles = []
    for i in range(2):
        job = Job(f"j{i}", [], tmp_path, f"logs/j{i}.log", threads=3, gpus=1)
        monkeypatch.setattr(job, "command", lambda: [sys.executable, "-c", script])
        assert executor.can_start(job)
        handles.append(executor.submit(job))
    third = Job("j2", [], tmp_path, "logs/j2.log", gpus=1)
    assert not executor.can_start(third)
    for handle in handles:
        _wait(lambda h=handle: executor.poll(h) is not None)
    outputs = sorted((tmp_path / "logs" / f"j{i}.log").read_text().strip() for i in range(2))
    assert outputs == ["3 3", "5 3"]


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="real-time signals are POSIX-only")
def test_a_child_killed_by_a_real_time_signal_is_reported(tmp_path, monkeypatch):
    """Signals outside Python's ``Signals`` enum (SIGRTMIN+6) once made poll raise ValueError."""
    number = signal.SIGRTMIN + 6
    job = Job("rt", [], tmp_path, "logs/rt.log")
    script = f"import os, signal; print('about to go'); os.kill(os.getpid(), {int(number)})"
    monkeypatch.setattr(job, "command", lambda: [sys.executable, "-c", script])
    executor = LocalExecutor()
    result = wait_job(executor, executor.submit(job), timeout=30, interval=0.05)
    assert result.exit_code == -number
    assert result.error == "killed by signal SIGRTMIN+6; about to go"
    assert signal_name(signal.SIGKILL) == "SIGKILL" and signal_name(1000) == "1000"


@pytest.mark.slow
def test_grid_run_trains_tests_and_analyzes(tmp_path):
    path = grid_file(tmp_path, settings="  experiment_repetitions: 1\n  max_concurrent_runs: 2\n")
    result = run_mip("grid", "run", path, "--expdir", tmp_path / "exp", timeout=600)
    assert result.returncode == 0, result.stderr
    folder = grid_folders(tmp_path / "exp")[0]
    for name in ["grid_analysis.csv", "grid_summary.csv", "report.html", "plots/SerialRecall.png",
                 "plots/ReverseRecall.png"]:
        assert (folder / name).is_file(), name
    rows = read_csv(folder / "grid_analysis.csv")
    assert len(rows) == 2 and all(r["test_acc"] and r["val_loss"] for r in rows)
    assert "plot:" in result.stdout and "serial" in result.stdout
    again = run_mip("grid", "analyze", folder)
    assert again.returncode == 0 and "reverse" in again.stdout


def test_shipped_grid_files_plan_and_validate(blank_mnist):
    root = Path(__file__).resolve().parents[4] / "configs" / "grids"
    for path in root.glob("*.yaml"):
        # a search builds each task's validation problem to check its objective: it reads the digits
        overrides = [f"training.problem.data_folder={blank_mnist}"] if path.name == "search_vision.yaml" else []
        if path.name == "cogent_protocol.yaml" and not torch.cuda.is_available():
            overrides.append("grid_settings.gpus_per_experiment=0")  # its GPU per experiment is refused without one
        spec = load_grid(path, overrides)
        assert spec.experiments or spec.search_tasks, path  # a search plans its tasks; trials come as it runs
    quickstart = load_grid(root / "quickstart.yaml")
    assert len(quickstart.experiments) == 12
    assert {e.config["model"]["name"] for e in quickstart.experiments} == {"LSTM", "GRU"}
    assert {e.config["training"]["problem"]["name"] for e in quickstart.experiments} == {"SerialRecall",
                                                                                          "ReverseRecall"}
    vision = load_grid(root / "vision_suite.yaml")  # image models x MNIST, recurrent models x (permuted) row MNIST
    assert len(vision.experiments) == 30 and vision.settings.max_concurrent_runs == 2
    pairs = {(e.config["model"]["name"], e.config["training"]["problem"]["name"]) for e in vision.experiments}
    assert {("LeNet5", "MNIST"), ("SimpleConvNet", "MNIST"), ("AlexNet", "MNIST"), ("ResNet20", "MNIST")} <= pairs
    for model in ("LSTM", "GRU", "ThalNet"):
        assert {(model, "SequentialRowMNIST"), (model, "PermutedSequentialRowMNIST")} <= pairs
    assert len(pairs) == 10


@pytest.mark.slow
def test_a_task_after_another_starts_from_its_folder(tmp_path):
    """``after`` + ``after_folder_keys``: the fine-tuning experiment of repetition r starts once the experiment
    of repetition r of the task it follows has trained, with ``model.init_from`` pointing at that folder."""
    path = grid_file(tmp_path, tasks="""grid_tasks:
  - name: pretrain
    default_configs: tasks/serial.yaml
  - name: finetune
    default_configs: tasks/serial.yaml
    after: pretrain
    after_folder_keys: [model.init_from]
    overwrite: {training.terminal_conditions.episode_limit: 10}
""", settings="  experiment_repetitions: 2\n  max_concurrent_runs: 2\n")
    spec = load_grid(path)
    after = {e.id: e.after for e in spec.experiments}
    assert after == {"000_pretrain_r0": None, "001_pretrain_r1": None,
                     "002_finetune_r0": "000_pretrain_r0", "003_finetune_r1": "001_pretrain_r1"}
    run_mip("grid", "train", path, "--expdir", tmp_path / "out", check=True, timeout=600)
    folder = grid_folders(tmp_path / "out")[0]
    manifest = Manifest.load(folder)
    records = {r.id: r for r in manifest.records}
    assert {r.status for r in manifest.records} == {"done"}
    for finetune, pretrain in (("002_finetune_r0", "000_pretrain_r0"), ("003_finetune_r1", "001_pretrain_r1")):
        assert records[finetune].started >= records[pretrain].ended  # it waited for its source
        info = json.loads((folder / records[finetune].folder / "run_info.json").read_text())
        source = Path(info["init_from"]["checkpoint_file"]).resolve()
        assert source == (folder / records[pretrain].folder / "models" / "model_best.pt").resolve()


def test_after_must_name_an_earlier_task(tmp_path):
    path = grid_file(tmp_path, tasks="""grid_tasks:
  - name: finetune
    default_configs: tasks/serial.yaml
    after: pretrain
  - name: pretrain
    default_configs: tasks/serial.yaml
""")
    with pytest.raises(ConfigError, match="after: 'pretrain' is not the name of an earlier task"):
        load_grid(path)

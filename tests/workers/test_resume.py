"""Exact resume: SIGKILL at any moment, then `mip train --resume`, ends like an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from miprometheus.checkpoint import load_checkpoint
from miprometheus.statistics import read_csv
from tests.conftest import SHARED_MNIST, experiment_dirs, run_mip, start_mip

SERIAL = """
training:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 1, max_sequence_length: 5, size: 400}
  curriculum_learning: {initial_max_sequence_length: 2}
  optimizer: {name: Adam, lr: 0.005}
  scheduler: {name: StepLR, step_size: 1, gamma: 0.9}
  gradient_clipping: 10
  terminal_conditions: {episode_limit: 160}
  checkpoint_interval: 7
  seed: 11
validation:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 5, max_sequence_length: 5, size: 48}
  interval: 30
model: {name: LSTM, hidden_size: 24, num_layers: 2, dropout: 0.3}
"""

MNIST = f"""
training:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 32, download: false}}
  sampler: {{name: SubsetRandomSampler, indices: [0, 640]}}
  optimizer: {{name: SGD, lr: 0.05, momentum: 0.9}}
  terminal_conditions: {{epoch_limit: 3}}
  checkpoint_interval: 7
  seed: 3
validation:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 100, download: false}}
  sampler: {{name: SubsetSequentialSampler, indices: [9000, 9200]}}
  interval: 25
model: {{name: SimpleConvNet}}
"""


def rows_without_time(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_csv(path)]


def count_rows(path: Path) -> int:
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def kill_after_rows(config: Path, expdir: Path, rows: int) -> Path:
    process = start_mip("train", config, "--expdir", expdir)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        folders = experiment_dirs(expdir)
        if folders and count_rows(folders[0] / "training_statistics.csv") >= rows:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return experiment_dirs(expdir)[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["serial_recall_generator", "mnist_dataset"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, name):
    text = SERIAL if name.startswith("serial") else MNIST
    if "MNIST" in text and not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    run_mip("train", config, "--expdir", tmp_path / "whole", check=True)
    whole = experiment_dirs(tmp_path / "whole")[0]

    rng = random.Random()
    killed = kill_after_rows(config, tmp_path / "killed", rng.randint(10, 45))
    before = count_rows(killed / "training_statistics.csv")
    resumed = run_mip("train", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr

    assert rows_without_time(killed / "training_statistics.csv") == rows_without_time(whole / "training_statistics.csv")
    assert rows_without_time(killed / "validation_statistics.csv") == \
        rows_without_time(whole / "validation_statistics.csv")
    a = load_checkpoint(whole / "models" / "model_last.pt")
    b = load_checkpoint(killed / "models" / "model_last.pt")
    assert a["trainer"]["episode"] == b["trainer"]["episode"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"{key} differs (killed after {before} rows)"
    best_a = load_checkpoint(whole / "models" / "model_best.pt")
    best_b = load_checkpoint(killed / "models" / "model_best.pt")
    assert best_a["episode"] == best_b["episode"]
    info = json.loads((killed / "run_info.json").read_text())
    assert info["status"] == "completed" and len(info["resumes"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_write_last_checkpoint_and_are_resumable(tmp_path, signum):
    config = tmp_path / "config.yaml"
    config.write_text(SERIAL.replace("episode_limit: 160", "episode_limit: 100000").replace(
        "checkpoint_interval: 7", "checkpoint_interval: null"))
    process = start_mip("train", config, "--expdir", tmp_path / "exp")
    deadline = time.time() + 120
    while time.time() < deadline:
        folders = experiment_dirs(tmp_path / "exp")
        if folders and count_rows(folders[0] / "training_statistics.csv") >= 20:
            break
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    folder = experiment_dirs(tmp_path / "exp")[0]
    info = json.loads((folder / "run_info.json").read_text())
    assert info["termination_cause"] == "interrupted" and info["status"] == "interrupted"
    last = load_checkpoint(folder / "models" / "model_last.pt")
    assert last["trainer"]["episode"] == count_rows(folder / "training_statistics.csv")
    limit = last["trainer"]["episode"] + 5
    resumed = run_mip("train", "--resume", folder, f"training.terminal_conditions.episode_limit={limit}")
    assert resumed.returncode == 0, resumed.stderr
    assert count_rows(folder / "training_statistics.csv") == last["trainer"]["episode"] + 5

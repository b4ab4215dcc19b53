"""Precision (``training.precision: 32 | bf16 | 16-mixed``), pinned memory, GPU jobs of grids, the GPU check script."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from miprometheus.checkpoint import load_checkpoint
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.config.sections import DataLoaderSection
from miprometheus.errors import ConfigError
from miprometheus.statistics import read_csv
from miprometheus.workers import runs, tester
from miprometheus.workers.grid.executors.base import Job
from miprometheus.workers.loaders import ProblemLoader
from miprometheus.workers.run_folder import RunOptions

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
training:
  problem: {name: SerialRecall, batch_size: 32, min_sequence_length: 1, max_sequence_length: 3, size: 3200}
  optimizer: {name: Adam, lr: 0.02}
  gradient_clipping: 10
  terminal_conditions: {episode_limit: 150}
  seed: 3
testing:
  problem: {name: SerialRecall, batch_size: 32, min_sequence_length: 3, max_sequence_length: 3, size: 64}
model: {name: LSTM, hidden_size: 32}
"""


def options(expdir: Path) -> RunOptions:
    return RunOptions(expdir=expdir, progress=False, command_line=["test"])


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("precision") / "exp.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def float32_losses(config, tmp_path_factory) -> list[float]:
    folder = runs.train([str(config)], [], options(tmp_path_factory.mktemp("fp32"))).folder
    return [float(r["loss"]) for r in read_csv(folder / "training_statistics.csv")]


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_mixed_precision_trains_on_the_cpu_and_the_loss_falls(tmp_path, config, float32_losses, precision):
    result = runs.train([str(config)], [f"training.precision={precision}"], options(tmp_path), test_after=True)
    losses = [float(r["loss"]) for r in read_csv(result.folder / "training_statistics.csv")]
    assert statistics.fmean(losses[-15:]) < 0.6 * statistics.fmean(losses[:15])
    assert losses != float32_losses  # autocast really changed the arithmetic ...
    assert abs(losses[0] - float32_losses[0]) < 1e-2  # ... from the same start
    assert json.loads((result.folder / "run_info.json").read_text())["precision"] == precision
    assert result.test is not None and result.test["loss"] < 0.69  # tested in the training precision
    spec = validate(load_config([result.folder / "training_configuration.yaml"]), required=("testing", "model"))
    assert tester.Tester(spec, 3).precision == precision


def test_16_mixed_resume_restores_the_gradient_scaler(tmp_path, config):
    limit = "training.terminal_conditions.episode_limit={}"
    overrides = ["training.precision=16-mixed"]
    whole = runs.train([str(config)], [*overrides, limit.format(40)], options(tmp_path / "whole")).folder
    stopped = runs.train([str(config)], [*overrides, limit.format(20)], options(tmp_path / "split")).folder
    halfway = load_checkpoint(stopped / "models" / "model_last.pt")["scaler"]
    assert halfway["_growth_tracker"] == 20 and halfway["scale"] == 65536.0
    runs.train([], [limit.format(40)], options(tmp_path / "split"), resume=stopped)
    a = load_checkpoint(whole / "models" / "model_last.pt")
    b = load_checkpoint(stopped / "models" / "model_last.pt")
    # The growth tracker counts steps since the last overflow: 40 only if the resume restored it.
    assert a["scaler"] == b["scaler"] and a["scaler"]["_growth_tracker"] == 40
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_precision_is_validated_and_saved_in_one_spelling(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG.replace("  seed: 3\n", "  seed: 3\n  precision: 32\n"))
    spec = validate(load_config([path]))
    assert spec.training.precision == "32"
    assert yaml.safe_load(yaml.safe_dump(spec.effective_tree()))["training"]["precision"] == "32"
    path.write_text(CONFIG.replace("  seed: 3\n", "  seed: 3\n  precision: 64\n"))
    with pytest.raises(ConfigError, match=r"exp.yaml:8: 'training.precision' must be one of 32, '32', 'bf16', "
                                          r"'16-mixed', got 64"):
        validate(load_config([path]))


def test_batches_are_pinned_when_the_device_is_cuda_unless_the_config_says_no():
    assert ProblemLoader.pin_memory(DataLoaderSection(), "cuda") is True
    assert ProblemLoader.pin_memory(DataLoaderSection(), torch.device("cuda:1")) is True
    assert ProblemLoader.pin_memory(DataLoaderSection(), "cpu") is False
    assert ProblemLoader.pin_memory(DataLoaderSection(pin_memory=False), "cuda") is False
    assert ProblemLoader.pin_memory(DataLoaderSection(pin_memory=True), "cpu") is True


def test_a_grid_job_holding_a_gpu_token_trains_on_cuda(tmp_path):
    gpu = Job("j", ["train", "c.yaml"], tmp_path, "logs/j.log", gpus=0.5).command()
    assert gpu[-2:] == ["--device", "cuda"]
    assert "--device" not in Job("j", ["train", "c.yaml"], tmp_path, "logs/j.log").command()


def test_gpu_check_script_runs_its_whole_path_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # (the grid part runs mip grid train: the grid tests and the Job test above cover it, in less time)
    code = module.main(["--device", "cpu", "--models", "LSTM", "--episodes", "8", "--threads", "1", "--no-grid"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:2] == ["LSTM", "cpu"]]
    assert [r[2] for r in rows] == ["32", "32", "bf16", "16-mixed"], out
    assert "FAILED:" not in out and "step time ratios: CPU/cpu (32)" in out, out
    assert code in (0, 1)  # 8 episodes are too few to demand that the loss falls by 10%

"""Defects a review found in the trainer, the checks and the tester: each test failed before its fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from miprometheus.checkpoint import load_checkpoint
from miprometheus.cli import main
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.workers import callbacks as cb
from miprometheus.workers import runs
from miprometheus.workers.run_folder import ExperimentFolder, RunOptions
from miprometheus.workers.trainer import Trainer
from tests.conftest import SHARED_MNIST


def options(tmp_path: Path) -> RunOptions:
    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"])


def mip(tmp_path: Path, *args: str) -> int:
    return main([*args, "--expdir", str(tmp_path / "experiments")] if args[0] == "train" else list(args))


def no_experiment_folder(tmp_path: Path) -> bool:
    return not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").rglob("run_info.json"))


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")
@pytest.mark.parametrize("section", ["training", "validation"])
def test_drop_last_with_fewer_samples_than_a_batch_is_bad_input(tmp_path, capsys, section):
    # before: training never ended (zero batches per epoch); an empty validation raised KeyError: 'loss'
    config = tmp_path / "mnist.yaml"
    config.write_text(f"""
training:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 32, download: false}}
  sampler: {{name: SubsetRandomSampler, indices: [0, 320]}}
  terminal_conditions: {{epoch_limit: 1}}
validation:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 50, download: false}}
  sampler: {{name: SubsetSequentialSampler, indices: [9000, 9040]}}
model: {{name: SimpleConvNet}}
""")
    small = (f"{section}.sampler.indices=[0,10]", f"{section}.dataloader.drop_last=true")
    for command in ("check", "train"):
        assert mip(tmp_path, command, str(config), *small) == 2
        assert "fewer than one batch" in capsys.readouterr().err
    assert no_experiment_folder(tmp_path)


@pytest.mark.parametrize("override, message", [
    ("training.terminal_conditions.episode_limit=null", "training needs a limit"),
    ("training.early_stopping.patience=2", "early stopping needs a 'validation' section"),
    ("training.curriculum_learning={initial_max_sequence_length: 9}", "initial_max_sequence_length \\(9\\)"),
    ("validation.num_batches=0", "'validation.num_batches' must be at least 1"),
])
def test_check_refuses_what_train_refuses_before_any_folder(tmp_path, tiny_config, capsys, override, message):
    # before: these passed `mip check` and failed only in `mip train` (the curriculum one after the folder existed)
    text = tiny_config.read_text()
    if "early_stopping" in override:
        text = text.split("validation:")[0] + "testing:" + text.split("testing:")[1]
    tiny_config.write_text(text)
    for command in ("check", "train"):
        assert mip(tmp_path, command, str(tiny_config), override) == 2
        assert re.search(message, capsys.readouterr().err)
    assert no_experiment_folder(tmp_path)


class Explodes(cb.Callback):
    def on_episode_end(self, trainer):
        if trainer.state.episode == 3:
            raise RuntimeError("a callback failed")


def test_callbacks_close_their_files_when_training_raises(tmp_path, tiny_config):
    spec = validate(load_config([tiny_config]))
    trainer = Trainer(spec, seed=1, callbacks=[*cb.default_callbacks(spec, options(tmp_path)), Explodes()])
    experiment = ExperimentFolder(tmp_path, options(tmp_path))
    trainer.attach(experiment)
    with pytest.raises(RuntimeError, match="a callback failed"):
        trainer.fit()
    csv = next(c for c in trainer.callbacks if isinstance(c, cb.StatisticsCSVCallback))
    assert csv.training._handle is None and csv.validation._handle is None  # closed
    assert not (tmp_path / "models" / "model_best.pt").exists()  # no "best" made of a failed run
    assert (tmp_path / "training_statistics.csv").read_text().count("\n") == 4  # header + 3 rows
    experiment.close()


def test_generated_validation_and_test_splits_default_to_a_small_size(tmp_path, tiny_config):
    # before: without `size` they validated and tested on the nominal epoch of 1,000,000 samples
    tree = yaml.safe_load(tiny_config.read_text())
    del tree["validation"]["problem"]["size"], tree["testing"]["problem"]["size"]
    tiny_config.write_text(yaml.safe_dump(tree))
    spec, report, _ = runs.check([str(tiny_config)], [])
    assert spec.splits["validation"].problem_params.size == 1000
    assert spec.splits["testing"].problem_params.size == 1000
    assert spec.splits["training"].problem_params.size == 320
    assert any(line.startswith("validation") and "1,000 samples" in line for line in report)
    assert spec.effective_tree()["validation"]["problem"]["size"] == 1000  # recorded


class StopBeforeValidating(cb.Callback):
    def on_episode_end(self, trainer):
        if trainer.state.episode == 5:
            trainer._signal = "SIGINT"  # what the SIGINT handler does


def test_weights_never_validated_are_labelled_so(tmp_path, tiny_config, caplog):
    # before: labelled "end of training (no validation)" although the config validates every 20 episodes
    spec = validate(load_config([tiny_config]))
    trainer = Trainer(spec, seed=1, callbacks=[*cb.default_callbacks(spec, options(tmp_path)),
                                             StopBeforeValidating()])
    folder = tmp_path / "exp"
    folder.mkdir()
    experiment = ExperimentFolder(folder, options(tmp_path))
    experiment.save_config(spec.effective_tree())
    experiment.start_run_info(1, "cpu")
    trainer.attach(experiment)
    assert trainer.fit() == "interrupted"
    experiment.close()
    best = load_checkpoint(folder / "models" / "model_best.pt")
    assert best["selected_by"] == cb.checkpoints.NEVER_VALIDATED and best["episode"] == 5
    test_folder, _ = runs.test(folder, [], options(tmp_path))
    testing = yaml.safe_load((test_folder / "testing_configuration.yaml").read_text())
    assert testing["testing"]["checkpoint_selected_by"] == cb.checkpoints.NEVER_VALIDATED
    assert "never validated" in (test_folder / "tester.log").read_text()
    # resumed, it validates: the best model is then chosen by validation
    result = runs.train([], [], options(tmp_path), resume=folder)
    assert load_checkpoint(folder / "models" / "model_best.pt")["selected_by"] == "validation"
    assert json.loads((folder / "run_info.json").read_text())["best_selected_by"] == "validation"
    assert result.episodes == 60

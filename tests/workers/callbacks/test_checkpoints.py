"""The checkpoint callback: how the weights of model_best.pt were chosen, said wherever they are used."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from miprometheus.checkpoint import load_checkpoint
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.workers import callbacks as cb
from miprometheus.workers import runs
from miprometheus.workers.run_folder import ExperimentFolder, RunOptions
from miprometheus.workers.trainer import Trainer


def options(tmp_path: Path) -> RunOptions:
    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"])


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

"""A stop asked for from outside the run (a search's pruner, a user): honoured at the next validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miprometheus.checkpoint import load_checkpoint
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.statistics import read_csv
from miprometheus.workers import callbacks as cb
from miprometheus.workers import runs
from miprometheus.workers.run_folder import ExperimentFolder, RunOptions
from miprometheus.workers.stop_cause import StopCause
from miprometheus.workers.trainer import Trainer


def options(tmp_path: Path) -> RunOptions:
    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"])


class AnotherProcessAsks(cb.Callback):
    """What a search's grid process does, from inside the run for the test: write the request at episode 25."""

    def __init__(self, cause: StopCause) -> None:
        self.cause = cause

    def on_episode_end(self, trainer):
        if trainer.state.episode == 25:
            cb.request_stop(trainer.folder, self.cause, "worse than the median of the trials at this step")


@pytest.mark.parametrize("cause, status", [(StopCause.PRUNED, "pruned"), (StopCause.REQUESTED, "completed")])
def test_a_requested_stop_ends_the_run_at_its_next_validation_with_a_checkpoint(tmp_path, tiny_config, cause, status):
    spec = validate(load_config([tiny_config]))  # validates every 20 episodes, 60 episodes
    trainer = Trainer(spec, seed=1, callbacks=[*cb.default_callbacks(spec, options(tmp_path)),
                                             AnotherProcessAsks(cause)])
    folder = tmp_path / "exp"
    folder.mkdir()
    experiment = ExperimentFolder(folder, options(tmp_path))
    experiment.save_config(spec.effective_tree(trainer.model.params))
    experiment.start_run_info(1, "cpu")
    trainer.attach(experiment)
    assert trainer.fit() is cause
    assert trainer.state.episode == 40 and "median of the trials" in trainer.stop_reason
    assert load_checkpoint(folder / "models" / "model_last.pt")["trainer"]["episode"] == 40
    assert [int(r["episode"]) for r in read_csv(folder / "validation_statistics.csv")] == [20, 40]  # not again
    assert len(read_csv(folder / "training_statistics.csv")) == 40
    assert not (folder / "stop_request.json").exists()  # consumed: a resumed run goes on
    assert cause.status == status
    experiment.close()
    result = runs.train([], [], options(tmp_path), resume=folder)  # resumed, it runs to its limit
    assert result.cause is StopCause.LIMIT and result.episodes == 60
    assert json.loads((folder / "run_info.json").read_text())["termination_cause"] == "limit"


def test_only_an_outside_cause_can_be_requested_and_a_malformed_request_is_ignored(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="pruned or requested"):
        cb.request_stop(tmp_path, StopCause.NAN)
    (tmp_path / "experiments").mkdir()
    config = tiny_config
    spec = validate(load_config([config]))
    trainer = Trainer(spec, seed=1, callbacks=[*cb.default_callbacks(spec, options(tmp_path))])
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "stop_request.json").write_text("{not json")
    experiment = ExperimentFolder(folder, options(tmp_path))
    trainer.attach(experiment)
    assert trainer.fit() is StopCause.LIMIT and trainer.state.episode == 60
    assert "ignoring" in (folder / "trainer.log").read_text()
    experiment.close()

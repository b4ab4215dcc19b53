"""TensorBoard's HParams: `mip train --hparams KEYS` writes them into the run's own event file, read back by
TensorBoard's own readers, so the HParams tab compares a grid's runs by their own validation scalars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2, metadata

from miprometheus.cli import main
from miprometheus.workers import runs
from miprometheus.workers.commands import resume_command
from miprometheus.workers.run_folder import RunOptions
from tests.conftest import experiment_dirs

SHORT = "training.terminal_conditions.episode_limit=20"  # one validation, at episode 20


def train(tmp_path: Path, *args: str) -> list[str]:
    """``mip train ARGS`` in this process (it must succeed); the arguments it was given."""
    args_list = [*args, "--expdir", str(tmp_path / "experiments"), "--no-progress"]
    assert main(["train", *args_list]) == 0
    return args_list


def hparams_content(folder: Path) -> tuple[dict[str, bytes], list[str]]:
    """The hparams plugin's summaries of the run in ``folder`` (tag: content), and its scalar tags."""
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return events.PluginTagToContent(metadata.PLUGIN_NAME), events.Tags()["scalars"]


def summaries_tagged(folder: Path, tag: str) -> int:
    """How many summaries of this tag the event files of ``folder/tensorboard`` hold, whatever step they are at."""
    return sum(value.tag == tag for path in sorted((folder / "tensorboard").iterdir())
               for event in EventFileLoader(str(path)).Load() for value in event.summary.value)


def test_hparams_are_written_into_the_runs_own_event_file_with_its_validation_metrics(tmp_path, tiny_config):
    train(tmp_path, str(tiny_config), SHORT, "--tensorboard", "0",
          "--hparams", "training.optimizer.lr,model.hidden_size", "--hparams", "training.problem.name,"
          "model.output_item_size,training.optimizer.lr")  # repeated flag; a key given twice counts once
    [folder] = experiment_dirs(tmp_path / "experiments")
    assert all(path.is_file() for path in (folder / "tensorboard").iterdir())  # no sub-directory (add_hparams)
    content, scalars = hparams_content(folder)
    assert set(content) == {metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {key: getattr(value, value.WhichOneof("kind")) for key, value in start.hparams.items()}
    # output_item_size is not in the config: the problem supplies it to the model
    assert values == {"training.optimizer.lr": 0.01, "model.hidden_size": 16, "training.problem.name": "SerialRecall",
                      "model.output_item_size": 8}
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [info.name for info in experiment.hparam_infos] == ["training.optimizer.lr", "model.hidden_size",
                                                               "training.problem.name", "model.output_item_size"]
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics[:2] == ["validation/loss", "validation/acc"]
    assert set(metrics) <= set(scalars)  # the run's own scalars: TensorBoard reads the metrics' values there
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.Status.Value("STATUS_SUCCESS")


def test_a_resumed_run_keeps_the_flag_and_writes_no_second_session_start(tmp_path, tiny_config):
    args = train(tmp_path, str(tiny_config), SHORT, "--tensorboard", "0", "--hparams=training.optimizer.lr")
    [folder] = experiment_dirs(tmp_path / "experiments")
    resumed = resume_command(folder, args)
    assert "--hparams=training.optimizer.lr" in resumed
    assert main([*resumed, "training.terminal_conditions.episode_limit=40"]) == 0
    assert len(list((folder / "tensorboard").iterdir())) == 2  # one event file per process, in the same folder
    assert summaries_tagged(folder, metadata.SESSION_START_INFO_TAG) == 1
    assert summaries_tagged(folder, metadata.EXPERIMENT_TAG) == 1
    content, _ = hparams_content(folder)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert dict(start.hparams)["training.optimizer.lr"].number_value == 0.01
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("validation/loss")] == [20, 40]
    assert json.loads((folder / "run_info.json").read_text())["resumes"][0]["from_episode"] == 20


def test_without_validation_the_metrics_are_the_training_statistics(tmp_path, tiny_config):
    text = tiny_config.read_text()
    tiny_config.write_text(text.split("validation:")[0] + "testing:" + text.split("testing:")[1])
    options = RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"], tensorboard=0,
                         hparams=["model.hidden_size"])
    result = runs.train([str(tiny_config)], [SHORT], options)
    content, scalars = hparams_content(result.folder)
    metrics = [info.name.tag for info in metadata.parse_experiment_plugin_data(
        content[metadata.EXPERIMENT_TAG]).metric_infos]
    assert metrics[:2] == ["training/loss", "training/acc"] and set(metrics) <= set(scalars)


@pytest.mark.parametrize("tensorboard", [["--tensorboard", "0"], []])
def test_a_key_the_configuration_lacks_is_bad_input_before_any_folder(tmp_path, tiny_config, capsys, tensorboard):
    code = main(["train", str(tiny_config), "--expdir", str(tmp_path / "experiments"), *tensorboard,
                 "--hparams", "model.hidden_size,training.optimizer.lrr"])
    assert code == 2
    error = capsys.readouterr().err
    assert "'training.optimizer.lrr'" in error and "did you mean 'training.optimizer.lr'" in error
    assert "model.hidden_size'" not in error
    assert not (tmp_path / "experiments").exists()


def test_an_empty_key_is_a_usage_error(tmp_path, tiny_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tiny_config), "--hparams", "model.hidden_size,,training.seed"])
    assert exit_info.value.code == 2
    assert "comma-separated config keys" in capsys.readouterr().err

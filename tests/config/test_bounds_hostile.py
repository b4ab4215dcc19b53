"""Careless and hostile values, and components that cannot work together, are refused when the config is
validated (``mip check`` and ``mip train`` alike, before any folder exists): each message names the file:line,
the full key and the bound or the reason."""

from __future__ import annotations

import pytest

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.errors import ConfigError
from tests.conftest import TINY_SERIAL


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_SERIAL)
    return path


def refusal(path, *overrides: str, text: str | None = None) -> str:
    """The message validate raises for the config with ``overrides`` (a file without ``text``)."""
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        validate(load_config([path], list(overrides)))
    return str(info.value)


@pytest.mark.parametrize(("override", "expected"), [
    ("training.terminal_conditions.episode_limit=0", "'training.terminal_conditions.episode_limit' must be at "
                                                     "least 1, got 0"),
    ("training.terminal_conditions.epoch_limit=-3", "'training.terminal_conditions.epoch_limit' must be at least 1"),
    ("training.gradient_clipping=-1", "'training.gradient_clipping' must be at least 0, got -1.0"),
    ("training.seed=1180591620717411303424", "'training.seed' must be -1 or between 0 and 9223372036854775807"),
    ("testing.seed=-5", "'testing.seed' must be between 0 and 9223372036854775807"),
    ("training.problem.batch_size=1000000000", "'training.problem.batch_size' must be between 1 and 65536"),
    ("training.problem.max_sequence_length=1000000000", "'training.problem.max_sequence_length' must be at most 65536"),
    ("model.hidden_size=10000000", "'model.hidden_size' must be between 1 and 16384, got 10000000"),
    ("model.dropout=5", "'model.dropout' must be between 0 and 1, got 5.0"),
    ("model.dropout=.nan", "'model.dropout' must be a finite number, got nan"),
    ("training.terminal_conditions.loss_stop=.inf", "'training.terminal_conditions.loss_stop' must be a finite "
                                                    "number, got inf"),
    ("training.early_stopping.min_delta=1e400", "'training.early_stopping.min_delta' must be a finite number"),
    ("training.optimizer.lr=-1", "'training.optimizer.lr' must be between 0 and 100.0, got -1"),
    ("training.optimizer.lr=1e30", "'training.optimizer.lr' must be between 0 and 100.0, got 1e+30"),
    ("training.optimizer.lr=.nan", "'training.optimizer.lr' must be a finite number, got nan"),
    ("training.optimizer.lr=.inf", "'training.optimizer.lr' must be a finite number, got inf"),
    ("training.optimizer.weight_decay=-0.1", "'training.optimizer.weight_decay' must be at least 0, got -0.1"),
    ("training.optimizer.betas=[0.9]", "'training.optimizer.betas' must be a list of 2 values (like the default "
                                       "[0.9, 0.999]), got [0.9]"),
    ("training.optimizer.betas=[0.9, .nan]", "'training.optimizer.betas' must be each item a finite number"),
    ("training.dataloader.num_workers=-1", "'training.dataloader.num_workers' must be between 0 and 256, got -1"),
    ("training.dataloader.num_workers=1000", "'training.dataloader.num_workers' must be between 0 and 256"),
    ("validation.dataloader.prefetch_factor=0", "'validation.dataloader.prefetch_factor' must be between 1 and"),
    ("training.dataloader.timeout=-1", "'training.dataloader.timeout' must be at least 0, got -1.0"),
])
def test_a_value_that_cannot_work_is_refused_with_its_key_and_bound(config_file, override, expected):
    message = refusal(config_file, override)
    assert expected in message
    assert f"command-line override '{override}': " in message  # where the value came from


def test_what_only_torch_knows_is_found_by_building_the_optimizer_and_named_by_its_key(config_file):
    # within the declared bounds, refused by torch itself: the message names the key torch's message names
    message = refusal(config_file, "training.optimizer.betas=[0.9, 1.0]")
    assert "'training.optimizer.betas' is refused by torch Adam" in message and "Invalid beta parameter" in message
    message = refusal(config_file, "training.optimizer={name: SGD, lr: 0.1, nesterov: true}")
    assert "'training.optimizer.nesterov' is refused by torch SGD" in message


@pytest.mark.parametrize(("optimizer", "why"), [("LBFGS", "optimizer.step(closure)"),
                                                ("SparseAdam", "sparse gradients")])
def test_an_optimizer_the_trainer_cannot_drive_is_refused_saying_why(config_file, optimizer, why):
    message = refusal(config_file, f"training.optimizer={{name: {optimizer}}}")
    assert f"optimizer {optimizer} cannot be used" in message and why in message


def test_a_scheduler_that_needs_a_python_function_is_refused_saying_why(config_file):
    message = refusal(config_file, "training.scheduler={name: LambdaLR, lr_lambda: 'lambda e: 0.9 ** e'}")
    assert "scheduler LambdaLR cannot be used: its lr_lambda is a Python function" in message


def test_scheduler_arguments_that_cannot_work_are_refused(config_file):
    message = refusal(config_file, "training.scheduler={name: StepLR, step_size: 0}")
    assert "'training.scheduler.step_size' must be at least 1, got 0" in message
    # found by building it: OneCycleLR needs total_steps or epochs and steps_per_epoch
    message = refusal(config_file, "training.scheduler={name: OneCycleLR, max_lr: 0.1}")
    assert "'training.scheduler' is refused by torch OneCycleLR" in message


def test_reduce_lr_on_plateau_steps_on_a_loss(config_file):
    plateau = "training.scheduler={name: ReduceLROnPlateau, factor: 0.5}"
    spec = validate(load_config([config_file], [plateau]))
    assert spec.scheduler.step_every == "validation"  # its default with a validation section
    assert spec.effective_tree()["training"]["scheduler"]["step_every"] == "validation"
    every_episode = "training.scheduler={name: ReduceLROnPlateau, step_every: episode}"
    assert validate(load_config([config_file], [every_episode])).scheduler.step_every == "episode"
    message = refusal(config_file, "training.scheduler={name: ReduceLROnPlateau, step_every: epoch}")
    assert "ReduceLROnPlateau steps on a loss: set 'training.scheduler.step_every' to validation" in message
    message = refusal(config_file, "training.scheduler={name: ReduceLROnPlateau, mode: max}")
    assert "'training.scheduler.mode' must be 'min'" in message
    without_validation = TINY_SERIAL.split("validation:")[0] + "testing:" + TINY_SERIAL.split("testing:")[1]
    message = refusal(config_file, plateau, text=without_validation)
    assert "ReduceLROnPlateau steps on a loss" in message and "(the default without a validation section)" in message


def test_a_scheduler_stepped_at_validations_needs_a_validation_section(config_file):
    without_validation = TINY_SERIAL.split("validation:")[0] + "testing:" + TINY_SERIAL.split("testing:")[1]
    message = refusal(config_file, "training.scheduler={name: StepLR, step_size: 2, step_every: validation}",
                      text=without_validation)
    assert "'training.scheduler.step_every' is validation, and the config has no validation section" in message


def test_settings_a_split_would_silently_ignore_are_refused(config_file):
    message = refusal(config_file, "training.sampler={indices: [0, 10]}")
    assert "'training.sampler' cannot choose samples of SerialRecall, which generates them" in message
    message = refusal(config_file, "validation.dataloader.prefetch_factor=4")
    assert "'validation.dataloader.prefetch_factor' needs worker processes" in message
    message = refusal(config_file, "training.dataloader.persistent_workers=true")
    assert "'training.dataloader.persistent_workers' needs worker processes" in message


def test_every_error_of_a_hostile_config_is_reported_at_once(config_file):
    message = refusal(config_file, "training.optimizer.lr=-1", "model.hidden_size=0", "training.seed=-2",
                      "training.terminal_conditions.episode_limit=0")
    assert message.count("\n  - ") >= 4

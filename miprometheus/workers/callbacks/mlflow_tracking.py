"""MLflow: each experiment one run (parameters, statistics, tags, files), logged without slowing or failing training."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    import logging

    from miprometheus.config.experiment_spec import ExperimentSpec
    from miprometheus.config.sections import MlflowTracking
    from miprometheus.workers.tracking.mlflow_sender import MlflowSender
    from miprometheus.workers.trainer import Trainer


def _never_raises(hook: Callable[..., None]) -> Callable[..., None]:
    """Tracking never stops training: a hook that fails is a warning."""

    @functools.wraps(hook)
    def guarded(self: MlflowCallback, trainer: Trainer, *args: Any) -> None:
        try:
            hook(self, trainer, *args)
        except Exception as exc:
            trainer.logger.warning("MLflow tracking: %s failed (%s: %s); training goes on", hook.__name__,
                                   type(exc).__name__, exc)

    return guarded


def grid_context() -> tuple[str | None, dict[str, str]]:
    """The parent run and the tags a grid gives the experiments it starts (through their environment)."""
    from miprometheus.workers.tracking.mlflow_values import PARENT_RUN_ENV, RUN_TAGS_ENV

    try:
        tags = json.loads(os.environ.get(RUN_TAGS_ENV) or "{}")
    except ValueError:
        tags = {}
    tags = {str(key): str(value) for key, value in tags.items()} if isinstance(tags, dict) else {}
    return os.environ.get(PARENT_RUN_ENV) or None, tags


def open_run(settings: MlflowTracking, folder: Path, logger: logging.Logger, *, reopen: bool) -> MlflowSender:
    """The sender of the experiment in ``folder``: the run its ``mlflow_run.json`` records for this destination (a
    resume, a test), else a new one named after the folder (its id in a grid), nested in the grid's run."""
    from miprometheus.workers.tracking.mlflow_folders import folder_tags
    from miprometheus.workers.tracking.mlflow_sender import MlflowSender
    from miprometheus.workers.tracking.mlflow_values import now_ms, recorded_run

    parent, grid_tags = grid_context()
    name = grid_tags.get("mip.grid_experiment", folder.name)  # in a grid, the experiment's id there
    return MlflowSender(settings.uri, settings.experiment, run_name=name, folder=folder,
                        run_id=recorded_run(folder, settings.uri, settings.experiment), parent_run_id=parent,
                        tags={**folder_tags(folder), **grid_tags}, start_time=now_ms(), reopen=reopen, logger=logger)


class MlflowCallback(Callback):
    """The experiment as an MLflow run (DESIGN §8): the flattened effective config as parameters; each block of
    training statistics in one request, every validation; tags (problem, model, seed, git commit, how it ended);
    at the end the config, run_info.json and the figures of --visualize. A resumed experiment continues its run.

    Everything goes through a sending process (``workers/tracking/``): a tracker that is down or slow is a warning,
    never an error, and what waits is sent when it answers again, or at the end within ``flush_timeout`` seconds."""

    def __init__(self, settings: MlflowTracking) -> None:
        self.settings = settings
        self.sender: MlflowSender | None = None

    @_never_raises
    def on_train_start(self, trainer: Trainer) -> None:
        from miprometheus.workers.tracking.mlflow_values import config_params

        self.sender = open_run(self.settings, trainer.folder, trainer.logger, reopen=True)
        tree = trainer.spec.effective_tree(trainer.model.params)
        tree["training"]["seed"] = trainer.seed  # the seed drawn for ``seed: -1``, as training_configuration.yaml
        self.sender.log_params(config_params(tree))
        if trainer.resumed:  # what the stopped process measured and could not send (a tracker down then)
            self.sender.sync_folder(trainer.folder, until_episode=trainer.state.episode)

    @_never_raises
    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        from miprometheus.workers.tracking.mlflow_values import training_entries

        if self.sender is not None:
            self.sender.log_metrics(training_entries(rows))

    @_never_raises
    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        from miprometheus.workers.tracking.mlflow_values import metric_entries

        if self.sender is not None:
            self.sender.log_metrics(metric_entries("validation", stats, trainer.state.episode))

    @_never_raises
    def on_run_recorded(self, trainer: Trainer) -> None:
        from miprometheus.workers.tracking.mlflow_folders import folder_artifacts, folder_tags
        from miprometheus.workers.tracking.mlflow_values import run_status

        if self.sender is None:
            return
        folder = trainer.folder
        for path, artifact_path in folder_artifacts(folder):
            self.sender.log_artifact(path, artifact_path)
        self.sender.set_tags(folder_tags(folder))  # now with how it ended and the git commit
        status = trainer.experiment.run_info.get("status") if trainer.experiment is not None else None
        self.sender.end(run_status(status))
        self.sender.close(self.settings.flush_timeout)
        self.sender = None


def track_test(spec: ExperimentSpec, experiment_folder: Path, test_folder: Path, results: dict[str, float],
               episode: int | None, logger: logging.Logger) -> None:
    """Log a test to the experiment's run: its statistics as ``test/<name>`` (``test/<setting>/<name>``) at the
    episode of the weights tested, and its folder as files. A test of weights outside an experiment gets its own
    run. Never raises: tracking never fails a test."""
    from miprometheus.workers.tracking.mlflow_values import metric_entries, recorded_run

    settings = spec.tracking.mlflow
    try:
        created = recorded_run(experiment_folder, settings.uri, settings.experiment) is None
        sender = open_run(settings, experiment_folder, logger, reopen=False)
        sender.log_metrics(metric_entries("test", results, episode or 0, skip=()))
        sender.log_artifact(test_folder, test_folder.name)
        if created:
            sender.end("FINISHED")
        sender.close(settings.flush_timeout)
    except Exception as exc:
        logger.warning("MLflow tracking of the test failed (%s: %s); the test folder has its results",
                       type(exc).__name__, exc)

"""Trainer callbacks: each feature of training lives here, not in the loop; ``default_callbacks`` builds the list."""

from __future__ import annotations

from typing import Any

from miprometheus.config.experiment_spec import ExperimentSpec
from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.callbacks.checkpoints import CheckpointCallback
from miprometheus.workers.callbacks.console import ConsoleCallback
from miprometheus.workers.callbacks.curriculum import CurriculumCallback
from miprometheus.workers.callbacks.early_stopping import EarlyStoppingCallback
from miprometheus.workers.callbacks.mlflow_tracking import MlflowCallback
from miprometheus.workers.callbacks.model_summary import ModelSummaryCallback
from miprometheus.workers.callbacks.statistics_csv import StatisticsCSVCallback
from miprometheus.workers.callbacks.stop_request import StopRequestCallback, request_stop
from miprometheus.workers.callbacks.tensorboard import TensorBoardCallback, check_hparam_keys
from miprometheus.workers.callbacks.validation import ValidationCallback
from miprometheus.workers.callbacks.visualization import VisualizationCallback


def default_callbacks(spec: ExperimentSpec, options: Any) -> list[Callback]:
    """The callbacks of a training run, in the order every hook calls them. ``options``: the run's
    command-line settings (``RunOptions``: ``log_interval``, ``progress``, ``tensorboard``, ``hparams``,
    ``visualize``, ``graph``, ``graph_depth``). A ``hparams`` key the configuration lacks is a ConfigError, with or
    without TensorBoard.
    The configuration's ``tracking.mlflow`` adds MLflow tracking.

    The order matters: the model summary comes first (it measures the first step's forward pass and logs the
    table, and with ``graph`` draws the graph, before anything reports on that step); the curriculum grows the
    problem at an epoch's end before validation runs; validation
    runs (and emits ``on_validation_end`` to everyone) before the checkpoints of that episode are written, so
    the best checkpoint holds the weights just validated; early stopping reads the validation just done; the
    console, TensorBoard and MLflow only report; visualization comes next (it reseeds only the validation problem, so
    nothing it does changes training); a stop requested from outside is honoured after all of them. On
    ``on_train_end``, the final validation runs before the best checkpoint is settled and the files are closed.
    """
    training = spec.training
    check_hparam_keys(spec, options.hparams)  # before the Trainer: bad input leaves no experiment folder behind
    log_interval = options.log_interval or training.log_interval
    callbacks: list[Callback] = [ModelSummaryCallback(options.graph, options.graph_depth)]
    if spec.curriculum is not None:
        callbacks.append(CurriculumCallback(spec.curriculum.params))
    if "validation" in spec.splits:
        section = spec.splits["validation"].section
        callbacks.append(ValidationCallback(section.interval, section.every_epoch))
    callbacks += [StatisticsCSVCallback(), CheckpointCallback(training.checkpoint_interval)]
    if training.early_stopping.patience:  # validate() made sure there is a validation section
        callbacks.append(EarlyStoppingCallback(training.early_stopping.patience, training.early_stopping.min_delta))
    callbacks.append(ConsoleCallback(log_interval, options.progress, training.terminal_conditions.episode_limit,
                                     training.terminal_conditions.epoch_limit))
    if options.tensorboard is not None:
        callbacks.append(TensorBoardCallback(options.tensorboard, log_interval, options.hparams))
    if spec.tracking is not None and spec.tracking.mlflow is not None:
        callbacks.append(MlflowCallback(spec.tracking.mlflow))
    if options.visualize is not None:
        callbacks.append(VisualizationCallback(options.visualize))
    callbacks.append(StopRequestCallback())  # last: a stop asked for now ends the run after this episode's work
    return callbacks


__all__ = ["Callback", "CheckpointCallback", "ConsoleCallback", "CurriculumCallback", "EarlyStoppingCallback",
           "MlflowCallback", "ModelSummaryCallback", "StatisticsCSVCallback", "StopRequestCallback",
           "TensorBoardCallback", "ValidationCallback", "VisualizationCallback", "default_callbacks", "request_stop"]

"""Trainer callbacks: each feature of training lives here, not in the loop."""

from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.callbacks.checkpoints import CheckpointCallback
from miprometheus.workers.callbacks.console import ConsoleCallback
from miprometheus.workers.callbacks.curriculum import CurriculumCallback
from miprometheus.workers.callbacks.early_stopping import EarlyStoppingCallback
from miprometheus.workers.callbacks.statistics_csv import StatisticsCSVCallback
from miprometheus.workers.callbacks.tensorboard import TensorBoardCallback
from miprometheus.workers.callbacks.validation import ValidationCallback
from miprometheus.workers.callbacks.visualization import VisualizationCallback

__all__ = ["Callback", "CheckpointCallback", "ConsoleCallback", "CurriculumCallback", "EarlyStoppingCallback",
           "StatisticsCSVCallback", "TensorBoardCallback", "ValidationCallback",
           "VisualizationCallback"]

"""Training and validation statistics to CSV, one row per episode / per validation."""

from __future__ import annotations

from typing import Any

from miprometheus.statistics import CSVWriter
from miprometheus.workers.callbacks.base import Callback

TRAINING_CSV = "training_statistics.csv"
VALIDATION_CSV = "validation_statistics.csv"


class StatisticsCSVCallback(Callback):
    def on_train_start(self, trainer: Any) -> None:
        keep = trainer.state.episode if trainer.resumed else None
        self.training = CSVWriter(trainer.folder / TRAINING_CSV, keep_until_episode=keep)
        self.validation = CSVWriter(trainer.folder / VALIDATION_CSV, keep_until_episode=keep)

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        self.training.write(stats)

    def on_validation_end(self, trainer: Any, stats: dict[str, float]) -> None:
        self.validation.write(stats)

    def on_train_end(self, trainer: Any, cause: str) -> None:
        self.training.close()
        self.validation.close()

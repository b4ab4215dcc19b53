"""Training and validation statistics to CSV, one row per episode / per validation."""

from __future__ import annotations

from typing import Any

from miprometheus.layout import TRAINING_CSV, VALIDATION_CSV
from miprometheus.statistics import Aggregator, CSVWriter
from miprometheus.workers.callbacks.base import Callback


class StatisticsCSVCallback(Callback):
    """``training_statistics.csv`` (one row per episode) and ``validation_statistics.csv`` (one per validation)."""

    validation: CSVWriter | None = None

    def on_train_start(self, trainer: Any) -> None:
        keep = trainer.state.episode if trainer.resumed else None
        # The columns are the statistics the problems declared, whatever the first row holds.
        columns = ["episode", "epoch", "loss", *trainer.problem.statistic_definitions, "time"]
        self.training = CSVWriter(trainer.folder / TRAINING_CSV, columns, keep_until_episode=keep)
        if trainer.validation is not None:
            columns = ["episode", "epoch", *Aggregator(trainer.val_problem.statistic_definitions).columns()]
            self.validation = CSVWriter(trainer.folder / VALIDATION_CSV, columns, keep_until_episode=keep)

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        self.training.write(stats)

    def on_validation_end(self, trainer: Any, stats: dict[str, float]) -> None:
        self.validation.write(stats)

    def on_train_end(self, trainer: Any, cause: str) -> None:
        self.training.close()
        if self.validation is not None:
            self.validation.close()

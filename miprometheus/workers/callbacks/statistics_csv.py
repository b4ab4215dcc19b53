"""Training and validation statistics to CSV, one row per episode / per validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from miprometheus.layout import TRAINING_CSV, VALIDATION_CSV
from miprometheus.statistics import Aggregator, CSVWriter
from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


class StatisticsCSVCallback(Callback):
    """``training_statistics.csv`` (one row per episode) and ``validation_statistics.csv`` (one per validation)."""

    def __init__(self) -> None:
        self.training: CSVWriter | None = None
        self.validation: CSVWriter | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        keep = trainer.state.episode if trainer.resumed else None
        # The columns are the statistics the problems declared, whatever the first row holds.
        columns = ["episode", "epoch", "loss", *trainer.problem.statistic_definitions, "time"]
        self.training = CSVWriter(trainer.folder / TRAINING_CSV, columns, keep_until_episode=keep)
        if trainer.validation is not None:
            columns = ["episode", "epoch", *Aggregator(trainer.validation.problem.statistic_definitions).columns()]
            self.validation = CSVWriter(trainer.folder / VALIDATION_CSV, columns, keep_until_episode=keep)

    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        self.training.write_rows(rows)

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        self.validation.write(stats)

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        for writer in (self.training, self.validation):
            if writer is not None:
                writer.close()

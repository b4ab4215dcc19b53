"""TensorBoard: scalars (level 0), + weight histograms (1), + gradient histograms (2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from miprometheus.layout import TENSORBOARD_DIR
from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


class TensorBoardCallback(Callback):
    """Event files in ``tensorboard/``: the statistics as scalars; from ``level`` 1 the weights at every
    validation, from 2 the gradients every ``log_interval`` episodes, as histograms."""

    def __init__(self, level: int, log_interval: int) -> None:
        self.level = level
        self.log_interval = max(1, log_interval)
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after the checkpoint it is resumed from
        purge = trainer.state.episode + 1 if trainer.resumed else None
        self.writer = SummaryWriter(str(trainer.folder / TENSORBOARD_DIR), purge_step=purge)

    def on_episode_end(self, trainer: Trainer) -> None:
        step = trainer.state.episode
        if self.level >= 2 and step % self.log_interval == 0:  # the gradients of the step just taken
            for name, p in trainer.model.named_parameters():
                if p.grad is not None:
                    self.writer.add_histogram(f"gradients/{name}", p.grad, step)

    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        for stats in rows:
            for key, value in stats.items():
                if key != "episode":
                    self.writer.add_scalar(f"training/{key}", value, int(stats["episode"]))

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        step = trainer.state.episode
        for key, value in stats.items():
            if key != "episode":
                self.writer.add_scalar(f"validation/{key}", value, step)
        if self.level >= 1:
            for name, p in trainer.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach(), step)

    def on_checkpoint(self, trainer: Trainer) -> None:
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        if self.writer is not None:
            self.writer.close()

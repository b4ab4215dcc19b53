"""TensorBoard: scalars (level 0), + weight histograms (1), + gradient histograms (2)."""

from __future__ import annotations

from typing import Any

from miprometheus.layout import TENSORBOARD_DIR
from miprometheus.workers.callbacks.base import Callback


class TensorBoardCallback(Callback):
    def __init__(self, level: int) -> None:
        self.level = level
        self.writer: Any = None

    def on_train_start(self, trainer: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after the checkpoint it is resumed from
        purge = trainer.state.episode + 1 if trainer.resumed else None
        self.writer = SummaryWriter(str(trainer.folder / TENSORBOARD_DIR), purge_step=purge)

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        step = trainer.state.episode
        for key, value in stats.items():
            if key != "episode":
                self.writer.add_scalar(f"training/{key}", value, step)
        if self.level >= 2 and step % trainer.log_interval == 0:
            for name, p in trainer.model.named_parameters():
                if p.grad is not None:
                    self.writer.add_histogram(f"gradients/{name}", p.grad, step)

    def on_validation_end(self, trainer: Any, stats: dict[str, float]) -> None:
        step = trainer.state.episode
        for key, value in stats.items():
            if key != "episode":
                self.writer.add_scalar(f"validation/{key}", value, step)
        if self.level >= 1:
            for name, p in trainer.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach(), step)

    def on_checkpoint(self, trainer: Any) -> None:
        self.writer.flush()

    def on_train_end(self, trainer: Any, cause: str) -> None:
        if self.writer is not None:
            self.writer.close()

"""Curriculum learning: the training problem grows harder at the end of every epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer


class CurriculumCallback(Callback):
    """Starts the training problem's curriculum with ``params`` (its ``CurriculumParams``) and grows it at
    every epoch's end; whether it is finished is the problem's ``curriculum_finished``."""

    def __init__(self, params: Any) -> None:
        self.params = params

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.resumed:  # a resumed problem restored its curriculum state with its own state
            trainer.problem.curriculum_start(self.params)
            trainer.problem.curriculum_update(0, trainer.loader.batches_per_epoch)

    def on_epoch_end(self, trainer: Trainer) -> None:
        was_finished = trainer.problem.curriculum_finished
        trainer.problem.curriculum_update(trainer.state.episode - 1, trainer.loader.batches_per_epoch)
        if trainer.problem.curriculum_finished and not was_finished:
            trainer.logger.info("curriculum learning finished at episode %d", trainer.state.episode)

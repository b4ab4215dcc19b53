"""Curriculum learning: the training problem grows harder at the end of every epoch."""

from __future__ import annotations

from typing import Any

from miprometheus.workers.callbacks.base import Callback


class CurriculumCallback(Callback):
    def __init__(self) -> None:
        self.done = False

    def on_train_start(self, trainer: Any) -> None:
        if not trainer.resumed:  # a resumed problem restored its curriculum state with its own state
            trainer.problem.curriculum_start(trainer.spec.curriculum_params)
            self.done = trainer.problem.curriculum_update(0, trainer.loader.batches_per_epoch)

    def on_epoch_end(self, trainer: Any) -> None:
        done = trainer.problem.curriculum_update(trainer.state.episode - 1, trainer.loader.batches_per_epoch)
        if done and not self.done:
            trainer.logger.info("curriculum learning finished at episode %d", trainer.state.episode)
        self.done = done

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = state["done"]

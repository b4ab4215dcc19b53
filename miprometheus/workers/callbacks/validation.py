"""Validation every N episodes and/or at the end of every epoch."""

from __future__ import annotations

from typing import Any

from miprometheus.workers.callbacks.base import Callback


class ValidationCallback(Callback):
    def __init__(self) -> None:
        self.last_validated_episode = -1

    def _validate(self, trainer: Any) -> None:
        if trainer.state.episode == self.last_validated_episode:
            return
        self.last_validated_episode = trainer.state.episode
        trainer.validate()

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        interval = trainer.spec.splits["validation"].section.interval
        if interval and trainer.state.episode % interval == 0:
            self._validate(trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        if trainer.spec.splits["validation"].section.every_epoch:
            self._validate(trainer)

    def on_train_end(self, trainer: Any, cause: str) -> None:
        # Always end with a validation of the final weights (unless they are broken or the run was stopped).
        if cause not in ("nan", "interrupted", "error"):
            self._validate(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"last_validated_episode": self.last_validated_episode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_validated_episode = state["last_validated_episode"]

"""Validation every N episodes and/or at the end of every epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


class ValidationCallback(Callback):
    """Validates every ``interval`` episodes, at every epoch's end when ``every_epoch``, and once at the end
    (the final weights), never twice at one episode."""

    def __init__(self, interval: int | None, every_epoch: bool) -> None:
        self.interval = interval
        self.every_epoch = every_epoch
        self.last_validated_episode = -1

    def _validate(self, trainer: Trainer) -> None:
        if trainer.state.episode == self.last_validated_episode:
            return
        self.last_validated_episode = trainer.state.episode
        trainer.validate()

    def on_episode_end(self, trainer: Trainer) -> None:
        if self.interval and trainer.state.episode % self.interval == 0:
            self._validate(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.every_epoch:
            self._validate(trainer)

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        # Always end with a validation of the final weights (unless they are broken or the run was stopped).
        if cause.validates_at_end:
            self._validate(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"last_validated_episode": self.last_validated_episode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_validated_episode = state["last_validated_episode"]

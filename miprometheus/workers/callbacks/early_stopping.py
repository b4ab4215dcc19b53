"""Early stopping: patience on the validation loss."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.stop_cause import StopCause

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer


class EarlyStoppingCallback(Callback):
    """Stops training when the validation loss has not improved by ``min_delta`` for ``patience`` validations."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_validations = 0

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        if stats["loss"] < self.best - self.min_delta:
            self.best = stats["loss"]
            self.bad_validations = 0
            return
        self.bad_validations += 1
        if self.bad_validations >= self.patience:
            trainer.stop(StopCause.EARLY_STOP, f"validation loss did not improve for {self.patience} validations")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.bad_validations = state["bad_validations"]

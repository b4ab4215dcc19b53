"""Best and last checkpoints: best at the lowest validation loss, last for an exact resume."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from miprometheus.checkpoint import save_checkpoint
from miprometheus.layout import BEST, MODELS_DIR
from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.stop_cause import StopCause

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer

#: how the weights of model_best.pt were chosen ("selected_by" in the checkpoint and in run_info.json)
BY_VALIDATION = "validation"
NO_VALIDATION = "end of training (no validation section)"
NEVER_VALIDATED = "last weights, never validated (stopped before the first validation)"


class CheckpointCallback(Callback):
    """Writes ``models/model_best.pt`` when the validation loss improves, and asks for ``model_last.pt``
    at every validation, at the end of every epoch and every ``checkpoint_interval`` episodes."""

    def __init__(self, checkpoint_interval: int | None = None) -> None:
        self.checkpoint_interval = checkpoint_interval
        self.best_loss = math.inf
        self.best_episode: int | None = None
        self.best_statistics: dict[str, float] | None = None
        self.selected_by: str | None = None

    def on_episode_end(self, trainer: Trainer) -> None:
        if self.checkpoint_interval and trainer.state.episode % self.checkpoint_interval == 0:
            trainer.request_checkpoint()

    def on_epoch_end(self, trainer: Trainer) -> None:
        trainer.request_checkpoint()

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        trainer.request_checkpoint()
        if stats["loss"] < self.best_loss:
            self.best_loss = stats["loss"]
            self.best_episode = trainer.state.episode
            self.best_statistics = dict(stats)
            self.save_best(trainer, stats, BY_VALIDATION)

    def save_best(self, trainer: Trainer, stats: dict[str, float], source: str) -> None:
        if not trainer.check_weights():
            return  # non-finite weights are never the best (the run ends with cause nan)
        self.selected_by = source
        save_checkpoint(trainer.folder / MODELS_DIR / BEST, {
            "kind": "best", "model_name": trainer.model.name, "problem_name": trainer.problem.name,
            "model": trainer.model.state_dict(), "episode": trainer.state.episode, "epoch": trainer.state.epoch,
            "statistics": {k: float(v) for k, v in stats.items()}, "selected_by": source,
        })
        trainer.logger.debug("best model saved (episode %d, loss %.6g)", trainer.state.episode, stats["loss"])

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        # Without a validation, there is no "best": the last weights are the ones to test, labelled as such
        # (a resumed run that was interrupted before validating replaces them with its own last weights).
        if self.selected_by == BY_VALIDATION or not cause.weights_usable or trainer.state.episode == 0:
            return
        last = trainer.last_training_stats or {"loss": math.nan}
        self.best_episode = trainer.state.episode
        # interrupted before the first validation: say so, mip test warns about it
        self.save_best(trainer, last, NO_VALIDATION if trainer.validation is None else NEVER_VALIDATED)

    def run_info(self) -> dict[str, Any]:
        return {"best_episode": self.best_episode, "best_selected_by": self.selected_by,
                "best_validation_statistics": self.best_statistics}

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_episode": self.best_episode,
                "best_statistics": self.best_statistics, "selected_by": self.selected_by}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = state["best_loss"]
        self.best_episode = state["best_episode"]
        self.best_statistics = state.get("best_statistics")
        self.selected_by = state.get("selected_by")

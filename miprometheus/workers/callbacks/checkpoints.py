"""Best and last checkpoints: best at the lowest validation loss, last for an exact resume."""

from __future__ import annotations

import math
from typing import Any

from miprometheus.checkpoint import save_checkpoint
from miprometheus.workers.callbacks.base import Callback

BEST = "model_best.pt"
LAST = "model_last.pt"


class CheckpointCallback(Callback):
    """Writes ``models/model_best.pt`` when the validation loss improves, and asks for ``model_last.pt``
    at every validation, at the end of every epoch and every ``checkpoint_interval`` episodes."""

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_episode: int | None = None
        self.best_statistics: dict[str, float] | None = None

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        interval = trainer.spec.training.checkpoint_interval
        if interval and trainer.state.episode % interval == 0:
            trainer.request_checkpoint()

    def on_epoch_end(self, trainer: Any) -> None:
        trainer.request_checkpoint()

    def on_validation_end(self, trainer: Any, stats: dict[str, float]) -> None:
        trainer.request_checkpoint()
        if stats["loss"] < self.best_loss:
            self.best_loss = stats["loss"]
            self.best_episode = trainer.state.episode
            self.best_statistics = dict(stats)
            self.save_best(trainer, stats, "validation")

    def save_best(self, trainer: Any, stats: dict[str, float], source: str) -> None:
        save_checkpoint(trainer.folder / "models" / BEST, {
            "kind": "best", "model_name": trainer.model.name, "problem_name": trainer.problem.name,
            "model": trainer.model.state_dict(), "episode": trainer.state.episode, "epoch": trainer.state.epoch,
            "statistics": {k: float(v) for k, v in stats.items()}, "selected_by": source,
        })
        trainer.logger.debug("best model saved (episode %d, loss %.6g)", trainer.state.episode, stats["loss"])

    def on_train_end(self, trainer: Any, cause: str) -> None:
        # Without validation there is no "best": the final model is the one to test.
        if self.best_episode is None and cause not in ("nan",) and trainer.state.episode > 0:
            last = trainer.last_training_stats or {"loss": math.nan}
            self.best_episode = trainer.state.episode
            self.save_best(trainer, last, "end of training (no validation)")

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_episode": self.best_episode,
                "best_statistics": self.best_statistics}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = state["best_loss"]
        self.best_episode = state["best_episode"]
        self.best_statistics = state.get("best_statistics")

"""The callback interface of the Trainer: every feature of training is a callback, the loop only calls them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


class Callback:
    """Hooks the Trainer calls, in the order of its callback list (``default_callbacks`` documents it).

    A callback receives its settings in ``__init__`` and reads the run's state from the ``trainer`` it is
    given (``trainer.state``, ``trainer.model``, ``trainer.folder``, ...). One with state that must survive a
    resume implements ``state_dict`` and ``load_state_dict`` (plain values and tensors only).
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Once, before the first step (after a resume restored the state): may open files, read the state."""

    def on_episode_end(self, trainer: Trainer) -> None:
        """After every training step (``trainer.state.episode`` counts it): may validate, ask for a checkpoint
        or stop; the step's statistics are not read yet (see ``on_training_statistics``)."""

    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        """With each block of per-episode training statistics read back from the device, in episode order
        (before every validation and checkpoint, every ``log_interval`` episodes and at the end): may write
        or log them, must not change them."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """After the last step of an epoch (``trainer.state.epoch`` counts it): may change the training problem."""

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        """After each validation, with its exact aggregates: may save weights, ask for a checkpoint or stop."""

    def on_checkpoint(self, trainer: Trainer) -> None:
        """After ``models/model_last.pt`` was written: may flush its own files so they match the checkpoint."""

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """When training raises, before ``on_train_end``: may record the error; must not raise."""

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        """Once, at the end, for every callback even when training raised: may validate, save, close files."""

    def on_run_recorded(self, trainer: Trainer) -> None:
        """Once, after ``on_train_end``, when run_info.json holds how the run ended (``runs.py`` calls it, also for a
        run that raised): may send the experiment's files elsewhere; must not raise."""

    def run_info(self) -> dict[str, Any]:
        """What this callback adds to run_info.json when training ends (e.g. the best checkpoint's episode)."""
        return {}

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under in ``model_last.pt`` (one callback of a class)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """The state to save in ``model_last.pt`` for an exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state ``state_dict`` returned."""

"""The callback interface of the Trainer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer


class Callback:
    """Hooks called by the Trainer; override the ones you need.

    A callback with state that must survive a resume implements ``state_dict`` and
    ``load_state_dict`` (plain values and tensors only).
    """

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_episode_end(self, trainer: Trainer, stats: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer) -> None: ...

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Trainer) -> None: ...

    def on_train_end(self, trainer: Trainer, cause: str) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

"""``--visualize`` during training: the figures of the problem and the model's internals at every validation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from miprometheus.seeding import derive_seed
from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


class VisualizationCallback(Callback):
    """At every validation, the figures of the first samples of the first validation batch, in
    ``visualizations/episode_<n>/`` (the same samples every time, so figures compare across episodes).

    Without a validation section: once, at the end, of the last training batch. ``setting`` is the
    number of samples, or ``"window"``: the interactive window instead of files (training waits
    until it is closed).
    """

    def __init__(self, setting: int | str = 1) -> None:
        self.setting = setting

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        # The validation problem is reseeded as validate() does: its first batch is the one just scored.
        validation = trainer.validation
        validation.problem.seed(derive_seed(trainer.seed, "validation"))
        self._visualize(trainer, validation.problem, validation.loader.epoch(0))

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        if trainer.validation is None and cause.validates_at_end and trainer.last_batch is not None:
            self._visualize(trainer, trainer.problem, [trainer.last_batch])

    def _visualize(self, trainer: Trainer, problem: Any, batches: Iterable[dict[str, Any]]) -> None:
        from miprometheus.layout import VISUALIZATION_EPISODE_PREFIX, VISUALIZATIONS_DIR
        from miprometheus.visualization import sample_count, visualize_samples  # matplotlib: only when drawing

        episode = trainer.state.episode
        window = self.setting == "window"
        folder = None if window else trainer.folder / VISUALIZATIONS_DIR / f"{VISUALIZATION_EPISODE_PREFIX}{episode}"
        paths = visualize_samples(problem, trainer.model, batches, sample_count(self.setting), trainer.device,
                                  folder, title=f"{trainer.model.name} on {problem.name}, episode {episode}")
        if paths:
            trainer.logger.info("visualizations of episode %d: %s", episode, folder)

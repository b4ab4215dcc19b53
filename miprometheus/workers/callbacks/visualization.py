"""``--visualize`` during training: the figures of the problem and the model's internals at every validation."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.seeding import derive_seed
from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


def sample_count(setting: int | str) -> int:
    """How many samples a ``--visualize`` setting draws: N, or the window's number of samples."""
    from miprometheus.visualization import WINDOW_SAMPLES

    return WINDOW_SAMPLES if setting == "window" else int(setting)


def visualize_samples(problem: Any, model: Any, batches: Iterable[dict[str, Any]], count: int, device: Any,
                      folder: Path | None, title: str = "") -> list[Path]:
    """Forward batches with recording on until ``count`` samples are drawn; write their figures into
    ``folder``, or show them in the interactive window when ``folder`` is None. The paths written."""
    from miprometheus import visualization as viz
    from miprometheus.workers.components import to_device
    from miprometheus.workers.step import run_step

    paths: list[Path] = []
    window_samples: list[dict[str, list[bytes]]] = []
    drawn = 0
    for batch in batches:
        if drawn >= count:
            break
        step = run_step(problem, model, to_device(batch, device), with_loss=False, call=viz.recorded_forward)
        batch, predictions = step.batch, step.predictions
        # Every sample of this batch is drawn before the next forward replaces the model's internals.
        for index in range(min(int(predictions.shape[0]), count - drawn)):
            if folder is None:
                rendered = viz.render_sample(problem, model, batch, predictions, index)
                window_samples.append({name: viz.encode(images) for name, (images, _) in rendered.items()})
            else:
                paths += viz.write_sample(folder, problem, model, batch, predictions, index, number=drawn)
            drawn += 1
    if folder is None and window_samples:
        viz.show_window(window_samples, title)
    return paths


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
        from miprometheus.layout import VISUALIZATIONS_DIR

        episode = trainer.state.episode
        window = self.setting == "window"
        folder = None if window else trainer.folder / VISUALIZATIONS_DIR / f"episode_{episode}"
        paths = visualize_samples(problem, trainer.model, batches, sample_count(self.setting), trainer.device,
                                  folder, title=f"{trainer.model.name} on {problem.name}, episode {episode}")
        if paths:
            trainer.logger.info("visualizations of episode %d: %s", episode, folder)

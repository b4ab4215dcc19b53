"""Console: a progress bar on a terminal, and a log line every ``log_interval`` episodes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


def format_stats(stats: dict[str, float], keys: list[str] | None = None) -> str:
    parts = []
    for key in keys or list(stats):
        value = stats.get(key)
        if value is None:
            continue
        if key in ("episode", "epoch") or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9
                                            and key.endswith(("length", "size", "aggregated"))):
            parts.append(f"{key} {int(value)}")
        else:
            parts.append(f"{key} {value:.4g}")
    return " | ".join(parts)


class ConsoleCallback(Callback):
    """A log line every ``log_interval`` episodes and after every validation; a progress bar when
    ``progress`` (None: when the console is a terminal), over the episodes the limits allow."""

    def __init__(self, log_interval: int, progress: bool | None, episode_limit: int | None = None,
                 epoch_limit: int | None = None) -> None:
        self.log_interval = max(1, log_interval)
        self.show_progress = sys.stderr.isatty() if progress is None else progress
        self.episode_limit, self.epoch_limit = episode_limit, epoch_limit
        self.progress: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        total = self.episode_limit
        if self.epoch_limit is not None:
            by_epochs = self.epoch_limit * trainer.loader.batches_per_epoch
            total = by_epochs if total is None else min(total, by_epochs)
        if self.show_progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.task = self.progress.add_task("train", total=total, completed=trainer.state.episode, info="")
            self.progress.start()

    def on_episode_end(self, trainer: Trainer) -> None:
        # the bar moves with the episodes; the loss it shows comes with each block read back
        if self.progress is not None and trainer.state.episode % 10 == 0:
            self.progress.update(self.task, completed=trainer.state.episode)

    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        if self.progress is not None and rows:
            self.progress.update(self.task, info=f"loss {rows[-1]['loss']:.4g}")
        for stats in rows:
            if int(stats["episode"]) % self.log_interval == 0:
                trainer.logger.info("training   %s", format_stats(stats))

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        keys = ["episode", "epoch", "loss"] + [k for k in stats if not k.endswith(("_min", "_max", "_std"))
                                               and k not in ("episode", "epoch", "loss")]
        trainer.logger.info("validation %s", format_stats(stats, keys))

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

"""Console: a progress bar on a terminal, and a log line every ``log_interval`` episodes."""

from __future__ import annotations

import sys
from typing import Any

from miprometheus.workers.callbacks.base import Callback


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
    def __init__(self, log_interval: int, progress: bool | None) -> None:
        self.log_interval = max(1, log_interval)
        self.show_progress = sys.stderr.isatty() if progress is None else progress
        self.progress: Any = None

    def on_train_start(self, trainer: Any) -> None:
        limits = trainer.spec.training.terminal_conditions
        total = limits.episode_limit
        if limits.epoch_limit is not None:
            by_epochs = limits.epoch_limit * trainer.loader.batches_per_epoch
            total = by_epochs if total is None else min(total, by_epochs)
        if self.show_progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.task = self.progress.add_task("train", total=total, completed=trainer.state.episode, info="")
            self.progress.start()

    def on_episode_end(self, trainer: Any, stats: dict[str, float]) -> None:
        episode = trainer.state.episode
        if self.progress is not None and episode % 10 == 0:
            self.progress.update(self.task, completed=episode, info=f"loss {stats['loss']:.4g}")
        if episode % self.log_interval == 0:
            trainer.logger.info("training   %s", format_stats(stats))

    def on_validation_end(self, trainer: Any, stats: dict[str, float]) -> None:
        keys = ["episode", "epoch", "loss"] + [k for k in stats if not k.endswith(("_min", "_max", "_std"))
                                               and k not in ("episode", "epoch", "loss")]
        trainer.logger.info("validation %s", format_stats(stats, keys))

    def on_train_end(self, trainer: Any, cause: str) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

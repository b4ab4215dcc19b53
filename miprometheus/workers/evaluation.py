"""One pass of a model over a split, aggregated exactly: used by validation and by the Tester."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from miprometheus.statistics import Aggregator, Measure, batch_value
from miprometheus.workers.components import check_declared_statistics, to_device
from miprometheus.workers.step import run_step

#: seconds between progress lines of a long evaluation
PROGRESS_EVERY_S = 10.0


def batch_row(problem: Any, batch: dict[str, Any], predictions: torch.Tensor,
              loss: torch.Tensor) -> tuple[Measure, dict[str, Any]]:
    """A batch's loss as a Measure (the loss and the items it is a mean over) and its raw statistics."""
    count = problem.loss_count(batch, predictions)
    loss_measure = Measure(float(loss) * count, count)
    return loss_measure, problem.statistics(batch, predictions.detach())


def row_values(statistics: dict[str, Any]) -> dict[str, float]:
    """The value of each statistic in one batch's row (a Measure becomes its ratio)."""
    return {name: batch_value(value) for name, value in statistics.items()}


@torch.no_grad()
def evaluate(problem: Any, model: Any, batches: Iterable[dict[str, Any]], device: torch.device,
             num_batches: int | None = None, total: int | None = None, what: str = "evaluation",
             logger: logging.Logger | None = None, check_first: bool = False,
             autocast: Callable[[], Any] = contextlib.nullcontext,
             on_batch: Callable[[dict[str, Any], torch.Tensor], None] | None = None,
             ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Run ``model`` over at most ``num_batches`` batches in eval mode; return per-batch rows and the aggregate.

    The aggregate is exact over the split (weighted by each statistic's counts, see
    :class:`~miprometheus.statistics.Aggregator`). A pass longer than a few seconds logs its progress.
    """
    aggregator = Aggregator(problem.statistic_definitions)
    rows: list[dict[str, float]] = []
    was_training = model.training
    model.eval()
    expected = total if num_batches is None else min(num_batches, total or num_batches)
    started = last_report = time.perf_counter()
    try:
        for i, batch in enumerate(batches):
            if num_batches is not None and i >= num_batches:
                break
            with autocast():
                step = run_step(problem, model, to_device(batch, device), check_first=check_first and i == 0)
            batch, predictions = step.batch, step.predictions
            loss_measure, statistics = batch_row(problem, batch, predictions, step.loss.float())
            if i == 0:
                check_declared_statistics(problem, statistics)
            samples = int(predictions.shape[0])
            aggregator.add(samples, loss_measure, statistics)
            rows.append({"episode": i + 1, "loss": loss_measure.value, **row_values(statistics)})
            if on_batch is not None:
                on_batch(batch, predictions)
            now = time.perf_counter()
            if logger is not None and now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                done = f"{i + 1}/{expected}" if expected else str(i + 1)
                logger.info("%s: %s batches (%.0f s)", what, done, now - started)
    finally:
        model.train(was_training)
    return rows, aggregator.result()

"""The one step of every pass over a batch: training, validation, testing and ``--visualize`` all run it.

forward (on the batch keys the model declares) → first-batch check → the model's further outputs merged
into the batch → the problem's loss. Nothing here reads a value back from the device: the loss stays a
tensor, so a training step on a GPU never waits for the kernels it queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.statistics import Counts, Measure
from miprometheus.workers.components import check_first_batch, model_inputs, split_output


@dataclass
class Step:
    """What one step produced: the batch with the model's further outputs, float32 predictions, the loss."""

    batch: dict[str, Any]
    predictions: torch.Tensor
    loss: torch.Tensor | None


def run_step(problem: Any, model: Any, batch: dict[str, Any], *, check_first: bool = False,
             with_loss: bool = True, call: Callable[[Any, dict[str, Any]], Any] | None = None) -> Step:
    """Run ``model`` on ``batch`` (already on the model's device) and score it with ``problem``.

    ``check_first``: check the batch and the output against their definitions (DESIGN §4.3; the caller asks
    for it on its first batch only). ``with_loss``: compute the loss (``--visualize`` draws without it).
    ``call(model, inputs)``: how to call the model (default: ``model(inputs)``; ``--visualize`` records its
    internals). The predictions are float32 whatever the precision: they are what the model declares, and
    the loss and statistics are computed on them in full precision.
    """
    inputs = model_inputs(model, batch)
    output = model(inputs) if call is None else call(model, inputs)
    predictions, extras = split_output(model, output)
    if check_first:
        check_first_batch(problem, model, batch, predictions, extras)
    if extras:
        batch = {**batch, **extras}
    loss = problem.loss(batch, predictions) if with_loss else None
    return Step(batch, predictions, loss)


def device_row(loss: torch.Tensor, statistics: dict[str, Any]) -> dict[str, Any]:
    """One training episode's loss and statistics, left where they were computed (tensors stay on the device).

    :func:`read_rows` brings a block of such rows back at once and turns each :class:`Measure` into its ratio
    (NaN for 0 items: the statistic is absent from the batch) and each :class:`Counts` into its value.
    """
    return {"loss": loss.detach(), **statistics}


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Measure):
        return [part for part in value if isinstance(part, torch.Tensor)]
    return []


def read_rows(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The rows as plain numbers, every tensor in them read back to the host in one transfer (one device sync
    per block instead of one per statistic and episode)."""
    tensors = [t for row in rows for value in row.values() for t in _tensors(value)]
    host: dict[int, float] = {}
    if tensors:
        if len({t.device for t in tensors}) == 1:
            numbers = torch.stack([t.detach().reshape(()).float() for t in tensors]).tolist()
        else:  # statistics computed on another device than the loss (a problem's choice): one read per tensor
            numbers = [t.item() for t in tensors]
        host = {id(t): number for t, number in zip(tensors, numbers)}

    def number(value: Any) -> float:
        return host[id(value)] if isinstance(value, torch.Tensor) else float(value)

    result = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if isinstance(value, Measure):
                total, count = number(value.total), number(value.count)
                out[key] = total / count if count else math.nan
            elif isinstance(value, Counts):
                out[key] = value.value
            elif key in ("episode", "epoch"):  # bookkeeping, kept as the integers they are
                out[key] = value
            else:
                out[key] = number(value)
        result.append(out)
    return result


__all__ = ["Step", "device_row", "read_rows", "run_step"]

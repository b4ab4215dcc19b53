"""The one step of every pass over a batch: training, validation, testing and ``--visualize`` all run it.

forward (on the batch keys the model declares) → first-batch check → the model's further outputs merged
into the batch → the problem's loss. Nothing here reads a value back from the device: the loss stays a
tensor, so a training step on a GPU never waits for the kernels it queued.
"""

from __future__ import annotations

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
    """One training episode's loss and statistics, still where they were computed (tensors stay on the device).

    A :class:`Measure` becomes its ratio and :class:`Counts` its finalised value; a Measure of 0 items is NaN
    (the statistic is absent from the batch). :func:`read_rows` brings a block of such rows back at once.
    """
    row: dict[str, Any] = {"loss": loss.detach()}
    for name, value in statistics.items():
        if isinstance(value, Measure):
            total, count = value
            if isinstance(total, torch.Tensor) or isinstance(count, torch.Tensor):
                total = torch.as_tensor(total, dtype=torch.float32)
                count = torch.as_tensor(count, dtype=torch.float32, device=total.device)
                row[name] = torch.where(count > 0, total / count, torch.full_like(total, float("nan")))
            else:
                row[name] = value.value
        elif isinstance(value, Counts):
            row[name] = value.value
        else:
            row[name] = value.detach() if isinstance(value, torch.Tensor) else float(value)
    return row


def read_rows(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The rows with every tensor value read back to the host in one transfer (one device sync per block)."""
    places = [(i, key) for i, row in enumerate(rows) for key, value in row.items() if isinstance(value, torch.Tensor)]
    if not places:
        return [dict(row) for row in rows]
    tensors = [rows[i][key].reshape(()).float() for i, key in places]
    if len({t.device for t in tensors}) == 1:
        values = torch.stack(tensors).tolist()
    else:  # statistics computed on another device than the loss (a problem's choice): one read per device
        values = [t.item() for t in tensors]
    result = [dict(row) for row in rows]
    for (i, key), value in zip(places, values):
        result[i][key] = value
    return result


__all__ = ["Step", "device_row", "read_rows", "run_step"]

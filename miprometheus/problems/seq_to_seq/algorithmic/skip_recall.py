"""SkipRecall: store a random binary sequence, then reproduce only every k-th item, starting at item s."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from miprometheus.params import param
from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import (
    RECALL_BIT,
    STORE_BIT,
    AlgorithmicSeqToSeqProblem,
)
from miprometheus.registry import register_problem


@register_problem
class SkipRecall(AlgorithmicSeqToSeqProblem):
    """Selective recall: after the recall marker, output only the items ``x[s], x[s+k], x[s+2k], ...``.

    Inputs: the store marker, the L items, the recall marker, then ``K = ceil((L - s) / k)`` recall
    steps. ``T = L + 2 + K``. Targets: ``x[s + j·k]`` for ``j = 0..K-1``; only those steps are scored.
    This task has no control lines: its recall steps always have zero control bits, whatever
    ``use_control_lines`` says. Example, ``s = 0``, ``k = 2``, ``L = 3`` (``S``/``R`` = store/recall
    marker, ``-`` = recall step)::

        inputs   S  a  b  c  R  -  -
        targets  .  .  .  .  .  a  c

    ``min_sequence_length`` must exceed ``seq_start`` so that every batch has a scored step.
    """

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of SkipRecall: the base ones, the first recalled item s and the step k."""

        seq_start: int = param(0, "index s of the first item to recall", min=0)
        skip_step: int = param(2, "recall every k-th item from s on", min=1)

    def _validate(self, p: Params) -> None:
        super()._validate(p)
        if p.min_sequence_length <= p.seq_start:
            # A sequence of L <= s items has nothing to recall: the masked loss would be 0/0.
            raise self.config_error(f"min_sequence_length ({p.min_sequence_length}) must exceed "
                                    f"seq_start ({p.seq_start}), or some sequences have nothing to recall")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """One length L for the batch and the data bits; no control line (this task has none)."""
        return {"items": self.draw_items(batch_size, self.draw_length())}

    def build_batch(self, items: torch.Tensor) -> Batch:
        """Lay out the items ``[B, L, D]`` and the recall of every ``skip_step``-th one from ``seq_start``."""
        batch_size, length, _ = items.shape
        c = self.control_bits
        # K = ceil((L - s) / k) items, or none when L <= s (a build_batch fed such items scores nothing).
        recalled = items[:, self.params.seq_start::self.params.skip_step]
        recall_steps = recalled.shape[1]
        batch = self.blank_batch(batch_size, length + 2 + recall_steps, length)
        sequences = batch["sequences"]
        sequences[:, 0, STORE_BIT] = 1.0
        sequences[:, 1:length + 1, c:] = items
        sequences[:, length + 1, RECALL_BIT] = 1.0
        recall = slice(length + 2, length + 2 + recall_steps)
        batch["targets"][:, recall] = recalled.to(batch["targets"].dtype)
        batch["masks"][:, recall] = 1
        return batch

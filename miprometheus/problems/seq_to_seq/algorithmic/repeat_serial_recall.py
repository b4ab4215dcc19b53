"""RepeatSerialRecall: store a random binary sequence once, then reproduce it R times, each on its own recall marker."""

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
from miprometheus.statistics import Measure, StatisticDefinition


@register_problem
class RepeatSerialRecall(AlgorithmicSeqToSeqProblem):
    """Store a sequence of random bit vectors once, then recall it in order R times (the repeat-copy task).

    ``R ~ U{min_recall_number..max_recall_number}`` and ``L`` are drawn once per batch; ``T = (R+1)(L+1)``.
    Inputs: the store marker, the L items, then R blocks of a recall marker followed by L recall steps
    that carry only the optional control line. Every block's targets are ``x[0], ..., x[L-1]``; all
    ``R·L`` recall steps are scored. Example, ``L = 2``, ``R = 2`` (``S``/``R`` = store/recall marker,
    ``-`` = recall step)::

        inputs   S  a  b  R  -  -  R  -  -
        targets  .  .  .  .  a  b  .  a  b

    Statistics: the base ones and ``num_recalls`` (R). Curriculum learning grows only the bound on L.
    """

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of the repeat tasks: the base ones and the range of the number of recalls R."""

        min_recall_number: int = param(1, "smallest number R of recalls of the sequence", min=1)
        max_recall_number: int = param(5, "largest number R of recalls of the sequence")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.statistic_definitions["num_recalls"] = StatisticDefinition("max", "largest number R of recalls")

    def _validate(self, p: Params) -> None:
        super()._validate(p)
        if p.max_recall_number < p.min_recall_number:
            raise self.config_error(f"min_recall_number ({p.min_recall_number}) must not exceed "
                      f"max_recall_number ({p.max_recall_number})")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """The base draws (items, control line) and the number of recalls R of the batch."""
        values = super().draw_values(batch_size)
        values["recall_number"] = self.draw_int(self.params.min_recall_number, self.params.max_recall_number)
        return values

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return items

    def build_batch(self, items: torch.Tensor, ctrl_aux: torch.Tensor, recall_number: int) -> Batch:
        """Lay out the store phase and ``recall_number`` recall blocks for the items ``[B, L, D]``."""
        batch_size, length, _ = items.shape
        c = self.control_bits
        block = length + 1
        batch = self.blank_batch(batch_size, (recall_number + 1) * block, length)
        sequences, targets, masks = batch["sequences"], batch["targets"], batch["masks"]
        sequences[:, 0, STORE_BIT] = 1.0
        sequences[:, 1:block, c:] = items
        # The recall phase is R identical blocks [recall marker, L recall steps]: views [B, R, L+1, ...].
        recall_inputs = sequences[:, block:].view(batch_size, recall_number, block, -1)
        recall_inputs[:, :, 0, RECALL_BIT] = 1.0
        recall_inputs[:, :, 1:, :c] = ctrl_aux.to(sequences.dtype)
        targets[:, block:].view(batch_size, recall_number, block, -1)[:, :, 1:] = (
            self.make_targets(items).to(targets.dtype).unsqueeze(1))
        masks[:, block:].view(batch_size, recall_number, block, 1)[:, :, 1:] = 1
        return batch

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """The base statistics and ``num_recalls``, read from the layout ``T = (R+1)(L+1)``."""
        stats = super().statistics(batch, predictions)
        steps = batch["sequences"].shape[1]
        stats["num_recalls"] = steps // (batch["sequences_length"].max() + 1) - 1  # a tensor, read back later
        return stats

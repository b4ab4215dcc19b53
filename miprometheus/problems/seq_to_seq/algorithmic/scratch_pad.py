"""ScratchPad: store several random binary sequences one after another, then reproduce only the last one."""

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

#: ``num_subsequences`` is an int8 tensor.
MAX_SUBSEQUENCES = 127


@register_problem
class ScratchPad(AlgorithmicSeqToSeqProblem):
    """Memory overwriting: N subsequences are stored one after another; only the last one must be recalled.

    ``N ~ U{num_subseq_min..num_subseq_max}`` and the lengths ``n_1..n_N ~ U{min..max_sequence_length}`` are
    drawn once per batch. Inputs: for each subsequence a store marker then its items; then one recall marker
    and ``n_N`` recall steps that carry only the optional control line. ``T = Σ(n_i + 1) + 1 + n_N``.
    Targets of the recall steps: the last subsequence ``x_N``; only those steps are scored. Example,
    ``N = 2``, ``x_1 = u v``, ``x_2 = a b c`` (``S``/``R`` = store/recall marker, ``-`` = recall step)::

        inputs   S  u  v  S  a  b  c  R  -  -  -
        targets  .  .  .  .  .  .  .  .  a  b  c

    ``sequences_length`` is the longest subsequence (``max_i n_i``), ``num_subsequences`` is N.
    Statistics: the base ones and ``num_subsequences`` (N). Curriculum learning grows only the bound on
    the lengths, never N.
    """

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of ScratchPad: the base ones and the range of the number of subsequences N."""

        num_subseq_min: int = param(1, "smallest number N of stored subsequences", min=1)
        num_subseq_max: int = param(3, "largest number N of stored subsequences", max=MAX_SUBSEQUENCES)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.statistic_definitions["num_subsequences"] = StatisticDefinition(
            "max", "largest number N of stored subsequences")

    def _validate(self, p: Params) -> None:
        super()._validate(p)
        if p.num_subseq_max < p.num_subseq_min:
            raise self.config_error(f"num_subseq_min ({p.num_subseq_min}) must not exceed "
                                    f"num_subseq_max ({p.num_subseq_max})")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """N, the N lengths (shared by the batch), the control line and the bits of every subsequence."""
        count = self.draw_int(self.params.num_subseq_min, self.params.num_subseq_max)
        lengths = [self.draw_length() for _ in range(count)]
        ctrl_aux = self.draw_control_line()
        return {"subsequences": [self.draw_items(batch_size, n) for n in lengths], "ctrl_aux": ctrl_aux}

    def build_batch(self, subsequences: list[torch.Tensor], ctrl_aux: torch.Tensor) -> Batch:
        """Lay out the given subsequences (each ``[B, n_i, D]``) and the recall of the last one."""
        if not subsequences:
            raise ValueError(f"{self.name}: at least one subsequence is needed")
        batch_size = subsequences[0].shape[0]
        last = subsequences[-1]
        recall_length = last.shape[1]
        c = self.control_bits
        store_steps = sum(items.shape[1] + 1 for items in subsequences)
        batch = self.blank_batch(batch_size, store_steps + 1 + recall_length,
                                 max(items.shape[1] for items in subsequences), len(subsequences))
        sequences = batch["sequences"]
        start = 0
        for items in subsequences:  # N is shared by the batch: a loop over subsequences, not samples
            sequences[:, start, STORE_BIT] = 1.0
            sequences[:, start + 1:start + 1 + items.shape[1], c:] = items
            start += items.shape[1] + 1
        sequences[:, store_steps, RECALL_BIT] = 1.0
        recall = slice(store_steps + 1, store_steps + 1 + recall_length)
        sequences[:, recall, :c] = ctrl_aux.to(sequences.dtype)
        batch["targets"][:, recall] = last.to(batch["targets"].dtype)
        batch["masks"][:, recall] = 1
        return batch

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """The base statistics and ``num_subsequences`` (N of the batch)."""
        stats = super().statistics(batch, predictions)
        stats["num_subsequences"] = batch["num_subsequences"].max()  # a tensor, read back later
        return stats

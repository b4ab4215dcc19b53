"""ReadingSpan: keep only the last item of each subsequence and recall those last items in order."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from miprometheus.data import DataDefinition
from miprometheus.params import param
from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import RECALL_BIT, STORE_BIT
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import Block, DualTaskProblem, Marker, Respond, Show
from miprometheus.registry import register_problem


@register_problem
class ReadingSpan(DualTaskProblem):
    """Complex span, as the reading-span test: of each subsequence only its last item is kept and recalled.

    Two control bits (the original's): bit 0 = store marker, bit 1 = recall marker.
    Layout: ``[store x_i]_i  recall D(N)``, where ``D(N)`` is N response steps (all-zero inputs, scored)
    whose targets are the last items ``x_1[n_1-1], ..., x_N[n_N-1]``; ``T = Σ(n_i+1) + 1 + N``. Example,
    ``x_1 = uv``, ``x_2 = abc`` (``S``/``R`` = store/recall marker, ``-`` = response step)::

        inputs   S u v S a b c R - -
        targets  . . . . . . . . v c

    Statistics: the algorithmic ones and ``num_subsequences`` (N). Curriculum learning grows the bound
    of ``n_i``.
    """

    marker_bits = 2
    recall_marker = RECALL_BIT
    scores_secondary = False
    marker_legend = "0: store marker, 1: recall marker"

    @dataclasses.dataclass
    class Params(DualTaskProblem.Params):
        """Parameters of ReadingSpan: the dual ones, with two control bits (store and recall markers)."""

        control_bits: int = param(2, "number of control channels: bit 0 = store marker, bit 1 = recall marker "
                                     "(more are allowed and stay 0)")
        num_subseq_min: int = param(1, "smallest number N of subsequences")
        num_subseq_max: int = param(3, "largest number N of subsequences")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.output_definitions["num_subsequences"] = DataDefinition((-1, 1), "int8", "number N of subsequences")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """``N`` and the subsequences ``[B, n_i, D]``: ``{"memory": [...]}``."""
        return {"memory": self.draw_memory(batch_size, self.draw_count())}

    def build_batch(self, memory: list[torch.Tensor]) -> Batch:
        """``[store x_i]_i recall D(N)`` for ``memory[i] = x_i`` ``[B, n_i, D]``; targets: the last items."""
        blocks: list[Block] = []
        for x in memory:
            blocks += [Marker(STORE_BIT), Show(x)]
        last_items = torch.cat([x[:, -1:] for x in memory], dim=1)
        blocks += [Marker(RECALL_BIT), Respond(last_items)]
        return self.lay_out(blocks, memory, num_subsequences=len(memory))

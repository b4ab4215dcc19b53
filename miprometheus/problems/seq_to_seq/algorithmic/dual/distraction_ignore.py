"""DistractionIgnore: store the memory subsequences, ignore the interleaved distractors, recall the memory list."""

from __future__ import annotations

import torch

from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import (
    MEMORY_START,
    SECONDARY_START,
    Block,
    Marker,
    PairedSubsequenceTask,
    Show,
)
from miprometheus.registry import register_problem


@register_problem
class DistractionIgnore(PairedSubsequenceTask):
    """Memory subsequences interleaved with distractors that are never asked for; recall the memory list.

    Layout (Jayram et al. 2018; markers ``#`` memory, ``%`` secondary, ``$`` recall on
    control bits 0 1 3): ``[# x_i % y_i]_i  $ D(n_1 + ... + n_N)``, where ``D(k)`` is k response steps
    (all-zero inputs, scored). Targets: ``x_1 .. x_N`` after ``$``; the distractors are never output.
    ``T = Σ(n_i+1) + Σ(m_i+1) + 1 + Σ n_i``. Example, ``x_1 = ab``, ``y_1 = s``, ``x_2 = c``, ``y_2 = pqr``
    (``-`` = response step)::

        inputs   # a b % s # c % p q r $ - - -
        targets  . . . . . . . . . . . . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``max_secondary_length`` (``acc`` is
    the memory recall's: nothing else is scored). Curriculum learning grows the bounds of both ``n_i``
    and ``m_i``.
    """

    scores_secondary = False

    def build_batch(self, memory: list[torch.Tensor], secondary: list[torch.Tensor]) -> Batch:
        """``[# x_i % y_i]_i $ D(Σ n_i)`` for ``memory[i] = x_i`` and ``secondary[i] = y_i`` ``[B, k, D]``."""
        blocks: list[Block] = []
        for x, y in zip(memory, secondary, strict=True):
            blocks += [Marker(MEMORY_START), Show(x), Marker(SECONDARY_START), Show(y)]
        return self.lay_out(blocks + self.final_recall(memory), memory)

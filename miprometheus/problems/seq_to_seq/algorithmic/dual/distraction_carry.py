"""DistractionCarry: keep the memory list through the distractors, carry only the last distractor, recall both."""

from __future__ import annotations

import torch

from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import (
    MEMORY_START,
    RESPOND_NOW,
    SECONDARY_START,
    Block,
    Marker,
    PairedSubsequenceTask,
    Respond,
    Show,
)
from miprometheus.registry import register_problem


@register_problem
class DistractionCarry(PairedSubsequenceTask):
    """Memory subsequences interleaved with distractors; at the end recall the last distractor, then the memory list.

    Layout (Jayram et al. 2018; markers ``#`` memory, ``%`` secondary, ``&`` respond,
    ``$`` recall on control bits 0-3): ``[# x_i % y_i]_i  & D(m_N)  $ D(n_1 + ... + n_N)``, where
    ``D(k)`` is k response steps (all-zero inputs, scored). Targets: ``y_N`` after ``&``, then
    ``x_1 .. x_N`` after ``$``. ``T = Σ(n_i+1) + Σ(m_i+1) + (m_N+1) + 1 + Σ n_i``. Example, ``x_1 = ab``,
    ``y_1 = s``, ``x_2 = c``, ``y_2 = pqr`` (``-`` = response step)::

        inputs   # a b % s # c % p q r & - - - $ - - -
        targets  . . . . . . . . . . . . p q r . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (the carried distractor), ``max_secondary_length``. Curriculum learning grows
    the bounds of both ``n_i`` and ``m_i``.
    """

    def build_batch(self, memory: list[torch.Tensor], secondary: list[torch.Tensor]) -> Batch:
        """``[# x_i % y_i]_i & D(m_N) $ D(Σ n_i)`` for ``memory[i] = x_i`` and ``secondary[i] = y_i`` ``[B, k, D]``."""
        blocks: list[Block] = []
        for x, y in zip(memory, secondary, strict=True):
            blocks += [Marker(MEMORY_START), Show(x), Marker(SECONDARY_START), Show(y)]
        blocks += [Marker(RESPOND_NOW), Respond(secondary[-1])]
        return self.lay_out(blocks + self.final_recall(memory), memory)

"""InterruptionReverseRecall: each interrupting subsequence is shown reversed and recalled in order at once."""

from __future__ import annotations

import torch

from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import PairedSubsequenceTask
from miprometheus.registry import register_problem


@register_problem
class InterruptionReverseRecall(PairedSubsequenceTask):
    """Task switching: reverse each interrupting subsequence as soon as it ends; recall the memory list at the end.

    Layout as DistractionForget (Jayram et al. 2018; markers ``#`` memory, ``%``
    secondary, ``&`` respond, ``$`` recall on control bits 0-3), except that ``y_i`` is *shown* last
    item first: ``[# x_i % reverse(y_i) & D(m_i)]_i  $ D(n_1 + ... + n_N)``. Targets: ``y_i`` (the reverse
    of what was shown) after each ``&``, then ``x_1 .. x_N`` after ``$``. Example, ``x_1 = ab``,
    ``y_1 = s``, ``x_2 = c``, ``y_2 = pqr`` (``-`` = response step)::

        inputs   # a b % s & - # c % r q p & - - - $ - - -
        targets  . . . . . . s . . . . . . . p q r . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (the reversed responses), ``max_secondary_length``. Curriculum learning grows
    the bounds of both ``n_i`` and ``m_i``.
    """

    def present(self, secondary: torch.Tensor) -> torch.Tensor:
        return secondary.flip(1)

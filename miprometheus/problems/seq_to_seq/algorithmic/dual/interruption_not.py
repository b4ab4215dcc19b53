"""InterruptionNot: answer each interrupting subsequence with its bitwise NOT at once; recall the memory list."""

from __future__ import annotations

import torch

from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import PairedSubsequenceTask
from miprometheus.registry import register_problem


@register_problem
class InterruptionNot(PairedSubsequenceTask):
    """Task switching: invert every bit of each interrupting subsequence at once; recall the memory list at the end.

    Layout as DistractionForget (Jayram et al. 2018; markers ``#`` memory, ``%`` secondary,
    ``&`` respond, ``$`` recall on control bits 0-3): ``[# x_i % y_i & D(m_i)]_i  $ D(n_1 + ... + n_N)``.
    Targets: ``NOT y_i`` (``1 - y_i``) after each ``&``, then ``x_1 .. x_N`` after ``$``. Example,
    ``x_1 = ab``, ``y_1 = s``, ``x_2 = c``, ``y_2 = pqr``, ``~`` = NOT (``-`` = response step)::

        inputs   # a b % s & - # c % p q r & -  -  -  $ - - -
        targets  . . . . . . ~s . . . . . . ~p ~q ~r . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (the NOT responses), ``max_secondary_length``. Curriculum learning grows the
    bounds of both ``n_i`` and ``m_i``.
    """

    def answer(self, secondary: torch.Tensor) -> torch.Tensor:
        return 1.0 - secondary

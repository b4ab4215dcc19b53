"""InterruptionSwapRecall: each interrupting subsequence is shown rotated in time and recalled unrotated at once."""

from __future__ import annotations

import dataclasses

import torch

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import PairedSubsequenceTask, rotate_left
from miprometheus.registry import register_problem


@register_problem
class InterruptionSwapRecall(PairedSubsequenceTask):
    """Task switching: undo a circular rotation of each interrupting subsequence at once; recall the memory list.

    Layout as DistractionForget (Jayram et al. 2018; markers ``#`` memory, ``%``
    secondary, ``&`` respond, ``$`` recall on control bits 0-3), except that ``y_i`` is *shown*
    rotated left in time by ``k_i``: ``z_i[t] = y_i[(t + k_i) mod m_i]``, with
    ``k_i = round_half_even(num_rotation · m_i) mod m_i`` if ``-1 <= num_rotation <= 1`` (so ``±1``
    rotates by nothing) and ``round_half_even(num_rotation) mod m_i`` otherwise, from each ``y_i``'s own
    length. Targets: ``y_i`` (the shown block rotated right by ``k_i``) after each ``&``, then
    ``x_1 .. x_N`` after ``$``. Example, ``num_rotation = 0.5``, ``x_1 = ab``, ``y_1 = s`` (k = 0),
    ``x_2 = c``, ``y_2 = pqr`` (k = round(1.5) = 2, shown ``rpq``; ``-`` = response step)::

        inputs   # a b % s & - # c % r p q & - - - $ - - -
        targets  . . . . . . s . . . . . . . p q r . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (the unrotated responses), ``max_secondary_length``. Curriculum learning grows
    the bounds of both ``n_i`` and ``m_i``.
    """

    @dataclasses.dataclass
    class Params(PairedSubsequenceTask.Params):
        """Parameters of InterruptionSwapRecall: the paired dual ones and the rotation of the shown subsequences."""

        num_rotation: float = param(0.5, "left rotation in time of each shown y_i: a fraction of its length "
                                         "if in [-1, 1], else a number of items")

    def present(self, secondary: torch.Tensor) -> torch.Tensor:
        return rotate_left(secondary, self.params.num_rotation, dim=1)

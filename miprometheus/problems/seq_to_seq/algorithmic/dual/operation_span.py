"""OperationSpan: after each memory subsequence, one operation item is answered with its bits rotated."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import DualTaskProblem, rotate_left
from miprometheus.registry import register_problem


@register_problem
class OperationSpan(DualTaskProblem):
    """Complex span: each memory subsequence is followed by one operation item, answered at once bit-rotated.

    Layout (Jayram et al. 2018; markers ``#`` memory, ``%`` operation, ``&`` respond,
    ``$`` recall on control bits 0-3): ``[# x_i % y_i & D(1)]_i  $ D(n_1 + ... + n_N)`` with every ``y_i``
    a single item. Targets: ``y_i`` with its bits rotated left by ``k`` (``out[j] = y_i[(j + k) mod D]``,
    ``k = round_half_even(num_rotation · D) mod D`` if ``-1 <= num_rotation <= 1``, else
    ``round_half_even(num_rotation) mod D``) after each ``&``, then ``x_1 .. x_N`` after ``$``;
    ``T = Σ(n_i+1) + 4N + 1 + Σ n_i``. Example, ``D = 3``, ``num_rotation = 0.5`` (k = 2), ``x_1 = ab``,
    ``y_1 = s = 010``, ``x_2 = c``, ``y_2 = p = 001``; ``s' = 001``, ``p' = 100`` (``-`` = response step)::

        inputs   # a b % s & -  # c % p & -  $ - - -
        targets  . . . . . . s' . . . . . p' . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (the rotated operation items). Curriculum learning grows the bound of ``n_i``
    (the operations always have one item).
    """

    @dataclasses.dataclass
    class Params(DualTaskProblem.Params):
        """Parameters of OperationSpan: the dual ones and the bit rotation of the answers."""

        num_rotation: float = param(0.5, "left rotation of the bits of each operation item: a fraction of "
                                         "data_bits if in [-1, 1], else a number of bits")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """``N``, the memory subsequences and one operation item per pair: ``{"memory": [...], "secondary": [...]}``."""
        count = self.draw_count()
        memory = self.draw_memory(batch_size, count)
        return {"memory": memory, "secondary": [self.draw_items(batch_size, 1) for _ in range(count)]}

    def answer(self, secondary: torch.Tensor) -> torch.Tensor:
        return rotate_left(secondary, self.params.num_rotation, dim=-1)

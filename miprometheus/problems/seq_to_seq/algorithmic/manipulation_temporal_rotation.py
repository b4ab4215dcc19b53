"""ManipulationTemporalRotation: store a random binary sequence, then reproduce it circularly rotated in time."""

from __future__ import annotations

import dataclasses

import torch

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.problems.seq_to_seq.algorithmic.transforms import rotate_seq
from miprometheus.registry import register_problem


@register_problem
class ManipulationTemporalRotation(AlgorithmicSeqToSeqProblem):
    """Temporal manipulation: recall the stored sequence rotated to the right by ρ items.

    Canonical layout (``T = 2L + 2``): the store marker, the L items, the recall marker, then L recall
    steps with the optional control line. Targets: ``x[(t - ρ) mod L]`` for ``t = 0..L-1``, with
    ``ρ = round_half_even(num_items · L)`` when ``-1 < num_items < 1`` (a fraction of the length), else
    ``round_half_even(num_items)`` (a number of items); a negative amount rotates to the left. Example,
    ``L = 3``, ``num_items = 0.5`` → ``ρ = round_half_even(1.5) = 2`` (``S``/``R`` = store/recall marker,
    ``-`` = recall step)::

        inputs   S  a  b  c  R  -  -  -
        targets  .  .  .  .  .  b  c  a

    Half-to-even rounding matters for odd L: ``L = 5 → ρ = 2``, ``L = 7 → ρ = 4``. Needs ``data_bits >= 2``.
    """

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of ManipulationTemporalRotation: the base ones and the rotation amount."""

        data_bits: int = param(8, "number of bits of one data item (at least 2: a rotation moves them)", min=2)
        num_items: float = param(0.5, "rotation to the right: a fraction of L if strictly between -1 and 1, "
                                      "else a number of items (rounded half to even)")

    def _validate(self, p: Params) -> None:
        super()._validate(p)

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return rotate_seq(items, self.params.num_items, dim=1)

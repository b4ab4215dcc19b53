"""ManipulationSpatialRotation: store a random binary sequence, then reproduce it with each item's bits rotated."""

from __future__ import annotations

import dataclasses

import torch

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.problems.seq_to_seq.algorithmic.transforms import bit_shift
from miprometheus.registry import register_problem


@register_problem
class ManipulationSpatialRotation(AlgorithmicSeqToSeqProblem):
    """Spatial manipulation: recall every item with its D bits circularly shifted towards higher indices by ρ.

    Canonical layout (``T = 2L + 2``): the store marker, the L items, the recall marker, then L recall
    steps with the optional control line. Target of item ``x[i]``: ``out[j] = x[i][(j - ρ) mod D]``, with
    ``ρ = round_half_even(num_bits_shifted · D)`` when ``-1 < num_bits_shifted < 1`` (a fraction of D),
    else ``round_half_even(num_bits_shifted)`` (a number of bits). With ``D = 8`` and the default 0.5,
    ``ρ = 4``: the two nibbles swap. Example, ``D = 3``, 0.5 → ``ρ = 2``::

        item    a = 1 0 1    b = 0 1 1    c = 1 1 0
        target      0 1 1        1 1 0        1 0 1

    Needs ``data_bits >= 2``.
    """

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of ManipulationSpatialRotation: the base ones and the shift amount."""

        data_bits: int = param(8, "number of bits of one data item (at least 2: a rotation moves them)", min=2)
        num_bits_shifted: float = param(0.5, "shift of the bits towards higher indices: a fraction of data_bits if "
                                             "strictly between -1 and 1, else a number of bits (rounded half to even)")

    def _validate(self, p: Params) -> None:
        super()._validate(p)

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return bit_shift(items, self.params.num_bits_shifted)

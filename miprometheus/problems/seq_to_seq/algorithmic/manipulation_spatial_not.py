"""ManipulationSpatialNot: store a random binary sequence, then reproduce it with every bit inverted."""

from __future__ import annotations

import torch

from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.registry import register_problem


@register_problem
class ManipulationSpatialNot(AlgorithmicSeqToSeqProblem):
    """Spatial manipulation: recall the stored sequence in order with every bit inverted (bitwise NOT).

    Canonical layout (``T = 2L + 2``): the store marker, the L items, the recall marker, then L recall
    steps with the optional control line. Targets: ``1 - x[i]``. Example, ``D = 3``::

        item    a = 1 0 1    b = 0 1 1    c = 1 1 0
        target      0 1 0        1 0 0        0 0 1
    """

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return 1.0 - items

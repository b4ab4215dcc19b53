"""SerialRecall: store a random binary sequence, then reproduce it in the same order (the NTM copy task)."""

from __future__ import annotations

import torch

from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.registry import register_problem


@register_problem
class SerialRecall(AlgorithmicSeqToSeqProblem):
    """Store a sequence of random bit vectors and recall it in the original order after the recall marker.

    Inputs: store marker, the L items, recall marker, then L recall steps that carry only the
    optional control line. Targets of the recall steps: ``x[0], ..., x[L-1]``.
    """

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return items

"""SequenceSymmetry: store a sequence, then say at the end of a second sequence whether it is the first reversed."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.sequence_comparison import SecondSequenceTask
from miprometheus.problems.seq_to_seq.algorithmic.sequence_equality import (
    answer_on_the_last_step,
    draw_sequence_scramblers,
)
from miprometheus.registry import register_problem


@register_problem
class SequenceSymmetry(SecondSequenceTask):
    """Store a sequence, then answer once, on the last step of a second sequence, whether it is the stored one reversed.

    Inputs: store marker, the L items ``x``, recall marker, then the L items of ``x'`` (with the
    optional control line). Per sample ``x' = reverse(x)`` with probability 0.5; otherwise the whole
    of ``x'`` is ``reverse(x)`` XOR Bernoulli(bias) bits (``hard``: only one random item of ``x'``).
    The label is recomputed from the bits, so an all-zero scrambler gives "symmetric". Target: one
    bit on the last step, the only scored one: 1 iff ``x' == reverse(x)`` (0 iff, with
    ``antisymmetry``). P(target = 1) = 0.5 + 0.5 (1 - bias)^(L D) (``hard``: 0.5 + 0.5 (1 - bias)^D).

    Example (D = 3): x = 101, 011, 110 and x' = 110, 011, 101 give the answer 1 on the last step.
    """

    reference_name = "reverse(x)"

    @dataclasses.dataclass
    class Params(SecondSequenceTask.Params):
        """Parameters of SequenceSymmetry."""

        antisymmetry: bool = param(False, "answer 1 when x' is not the reverse of x instead of when it is")
        hard: bool = param(False, "scramble a single item of x' instead of all of them")

    def reference(self, items: torch.Tensor) -> torch.Tensor:
        """The stored items last first: ``x'`` is compared with ``reverse(x)``."""
        return items.flip(1)

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """The base's items and control line, and ``scramblers`` [B, L, D] of ``x'`` (as in SequenceEquality)."""
        values = super().draw_values(batch_size)
        batch_size, length, _ = values["items"].shape
        values["scramblers"] = draw_sequence_scramblers(self, batch_size, length, self.params.hard)
        return values

    def answers(self, equal_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One answer on the last step, for the whole sequence."""
        return answer_on_the_last_step(equal_items, self.params.antisymmetry)

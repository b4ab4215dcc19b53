"""SequenceEquality: store a sequence, then say once, at the end of a second sequence, whether the two are equal.

Also home of the two pieces SequenceSymmetry shares with it: the whole-sequence scrambling
(:func:`draw_sequence_scramblers`) and the single answer on the last step (:func:`answer_on_the_last_step`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from miprometheus.params import param
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.problems.seq_to_seq.algorithmic.sequence_comparison import SecondSequenceTask
from miprometheus.registry import register_problem


def draw_sequence_scramblers(problem: AlgorithmicSeqToSeqProblem, batch_size: int, length: int,
                             hard: bool) -> torch.Tensor:
    """Scrambler masks ``[B, L, D]`` of whole sequences: zero for half the samples (``x'`` intact), drawn otherwise.

    A scrambled sample XORs every item with Bernoulli(bias) bits, or with ``hard`` only one item
    ``i ~ U{0..L-1}`` (per sample), so that ``x'`` differs in at most one item.
    """
    scrambled = torch.rand(batch_size, 1, 1, generator=problem.generator) < 0.5
    if hard:
        index = torch.randint(0, length, (batch_size,), generator=problem.generator)
        # one-hot rows [B, L, 1] times one Bernoulli row per sample [B, 1, D]
        masks = F.one_hot(index, length).unsqueeze(-1) * problem.draw_items(batch_size, 1)
    else:
        masks = problem.draw_items(batch_size, length)
    return masks * scrambled


def answer_on_the_last_step(equal_items: torch.Tensor, invert: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and scored steps ``[B, L]``: one answer on the last step, 1 iff every item is equal (inverted with
    ``invert``)."""
    scored = torch.zeros_like(equal_items)
    scored[:, -1] = True
    targets = torch.zeros_like(equal_items)
    targets[:, -1] = equal_items.all(dim=1) != invert
    return targets, scored


@register_problem
class SequenceEquality(SecondSequenceTask):
    """Store a sequence, then answer once, on the last step of a second sequence, whether it equals the stored one.

    Inputs: store marker, the L items ``x``, recall marker, then the L items of ``x'`` (with the
    optional control line). Per sample ``x' = x`` with probability 0.5; otherwise the whole of
    ``x'`` is ``x`` XOR Bernoulli(bias) bits (``hard``: only one random item is XOR-ed, so ``x'``
    differs from ``x`` in at most one item). The label is recomputed from the bits, so an all-zero
    scrambler gives "equal". Target: one bit on the last step, the only scored one: 1 iff
    ``x' == x`` entirely (0 iff, with ``inequality``). P(target = 1) = 0.5 + 0.5 (1 - bias)^(L D)
    (``hard``: 0.5 + 0.5 (1 - bias)^D).

    Example (D = 3): x = 101, 011, 110 and x' = 101, 001, 010 give the answer 0 on the last step.
    """

    @dataclasses.dataclass
    class Params(SecondSequenceTask.Params):
        """Parameters of SequenceEquality."""

        inequality: bool = param(False, "answer 1 when the sequences differ instead of when they are equal")
        hard: bool = param(False, "scramble a single item of x' instead of all of them")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """The base's items and control line, and ``scramblers`` [B, L, D] (:func:`draw_sequence_scramblers`)."""
        values = super().draw_values(batch_size)
        batch_size, length, _ = values["items"].shape
        values["scramblers"] = draw_sequence_scramblers(self, batch_size, length, self.params.hard)
        return values

    def answers(self, equal_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One answer on the last step, for the whole sequence."""
        return answer_on_the_last_step(equal_items, self.params.inequality)

"""SequenceComparison: store a sequence, then say item by item whether a second sequence matches it.

Also home of :class:`SecondSequenceTask`, the layout the three comparison tasks share
(Jayram et al. 2018, arXiv:1809.10847): the canonical layout whose recall phase carries a second sequence
``x'``, and a one-bit answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from miprometheus.data import DataDefinition
from miprometheus.params import param
from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import (
    RECALL_BIT,
    STORE_BIT,
    AlgorithmicSeqToSeqProblem,
)
from miprometheus.registry import register_problem


class SecondSequenceTask(AlgorithmicSeqToSeqProblem):
    """Base of the comparison tasks: a second sequence ``x'`` in the recall phase, answers of one bit.

    ``x' = reference(x) XOR scramblers``: the draws only choose the scrambler masks (all-zero rows
    keep an item), and every label is recomputed from the bits, so a scrambler that happens to be
    zero gives an "equal" item. Subclasses implement :meth:`draw_values` (adding ``scramblers``)
    and :meth:`answers`; SequenceSymmetry also overrides :meth:`reference`.
    """

    #: how the plot names ``reference(x)``
    reference_name = "x"

    def __init__(self, params: AlgorithmicSeqToSeqProblem.Params) -> None:
        super().__init__(params)
        self.output_definitions["targets"] = DataDefinition(
            (-1, -1, 1), "float32", "the answer bit on the scored steps, 0 elsewhere")
        self.prediction_definitions = {"predictions": DataDefinition((-1, -1, 1), "float32", "logit per step")}
        self.default_values["output_item_size"] = 1

    def reference(self, items: torch.Tensor) -> torch.Tensor:
        """What ``x'`` is compared with, ``[B, L, D]``: the stored items themselves."""
        return items

    def answers(self, equal_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets ``[B, L]`` and scored steps ``[B, L]`` (bool) of the recall phase, from ``equal_items`` [B, L]
        (whether ``x'[i]`` equals ``reference(x)[i]``, all bits)."""
        raise NotImplementedError

    def build_batch(self, items: torch.Tensor, scramblers: torch.Tensor, ctrl_aux: torch.Tensor) -> Batch:
        """Lay out a batch from the items ``[B, L, D]``, the scrambler masks ``[B, L, D]`` and the control line ``[C]``.

        Deterministic: ``x' = reference(items) XOR scramblers`` fills the recall phase's data bits.
        """
        batch_size, length, _ = items.shape
        c = self.control_bits
        steps = 2 * length + 2
        recall = slice(length + 2, steps)

        batch = self.blank_batch(batch_size, steps, length)
        batch["targets"] = torch.zeros(batch_size, steps, 1)
        reference = self.reference(items)
        second = torch.logical_xor(reference.bool(), scramblers.bool())
        sequences = batch["sequences"]
        sequences[:, 0, STORE_BIT] = 1.0
        sequences[:, 1:length + 1, c:] = items
        sequences[:, length + 1, RECALL_BIT] = 1.0
        sequences[:, recall, :c] = ctrl_aux.to(sequences.dtype)
        sequences[:, recall, c:] = second.to(sequences.dtype)
        targets, scored = self.answers((second == reference.bool()).all(dim=-1))
        batch["targets"][:, recall, 0] = targets.to(batch["targets"].dtype) * scored
        batch["masks"][:, recall, 0] = scored.to(torch.uint8)
        return batch

    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Frames over time of sample ``index``: inputs, the bits where ``x'`` differs, the answer, prediction, mask."""
        from miprometheus.plotting import Panel, sequence_frames, to_numpy

        c = self.control_bits
        length = int(batch["sequences_length"][index])
        inputs = batch["sequences"][index]
        differs = inputs.new_zeros(inputs.shape[0], self.data_bits)
        stored = inputs[1:length + 1, c:].unsqueeze(0)
        differs[length + 2:] = (inputs[length + 2:, c:] != self.reference(stored)[0]).float()
        panels = [Panel(f"inputs (control bits 0-{c - 1}, then data bits; x' in the recall phase)",
                        to_numpy(inputs).T, ylabel="channel"),
                  Panel(f"bits where x' differs from {self.reference_name}", to_numpy(differs).T, cmap="Reds",
                        ylabel="bit"),
                  *self.scored_panels(batch, index, predictions, answers=True)]
        return sequence_frames(panels, f"{self.name}, sample {index} (L = {length})")


@register_problem
class SequenceComparison(SecondSequenceTask):
    """Store a sequence, then answer at every step of a second sequence whether its item equals the stored one.

    Inputs: store marker, the L items ``x``, recall marker, then the L items of ``x'`` (with the
    optional control line). Each ``x'[i]`` is ``x[i]`` with probability 0.5, otherwise ``x[i]`` XOR a
    fresh Bernoulli(bias) mask (which may be all zero: the item is then equal). Target of recall
    step i (one bit, every recall step scored): 1 iff ``x'[i] == x[i]`` (0 iff, with ``inequality``).
    P(target = 1) = 0.5 + 0.5 (1 - bias)^D.

    Example (D = 3): x = 101, 011, 110 and x' = 101, 111, 110 give the answers 1, 0, 1.
    """

    @dataclasses.dataclass
    class Params(SecondSequenceTask.Params):
        """Parameters of SequenceComparison."""

        inequality: bool = param(False, "answer 1 where the items differ instead of where they are equal")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """The base's items and control line, and ``scramblers`` [B, L, D]: zero rows for the kept items."""
        values = super().draw_values(batch_size)
        batch_size, length, _ = values["items"].shape
        kept = torch.rand(batch_size, length, 1, generator=self.generator) < 0.5
        values["scramblers"] = self.draw_items(batch_size, length) * ~kept
        return values

    def answers(self, equal_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One answer per item, every recall step scored."""
        return equal_items != self.params.inequality, torch.ones_like(equal_items)

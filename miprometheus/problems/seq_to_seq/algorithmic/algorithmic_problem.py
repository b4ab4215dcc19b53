"""The base of the algorithmic sequence-to-sequence memory tasks (serial recall, reverse recall, ...).

A generated sample stores a random binary sequence ``x[0..L-1]`` and asks for a transformation of it
after a recall cue. Inputs have ``C`` control channels followed by ``D`` data channels; the
canonical layout (``T = 2L + 2`` steps) is::

    t = 0            store marker (control bit 0)
    t = 1 .. L       the items x[0] .. x[L-1] (no control bit)
    t = L+1          recall marker (control bit 1)
    t = L+2 .. 2L+1  recall steps: no data, the optional control line; targets = make_targets(x)

Generation is split in two, so that a test can feed a worked example's values in:

* :meth:`AlgorithmicSeqToSeqProblem.draw_values` makes every random draw of one batch from
  ``self.generator`` (lengths, counts, items, control line, task-specific choices) and returns them
  as a dict of keyword arguments;
* :meth:`AlgorithmicSeqToSeqProblem.build_batch` lays the batch out from exactly those values,
  deterministically;
* ``generate_batch(batch_size) = build_batch(**draw_values(batch_size))``.

A task that keeps the canonical layout only implements ``make_targets``; a task with another layout
overrides ``draw_values`` (calling ``super().draw_values`` for the items and the control line, or the
``draw_*`` helpers) and ``build_batch`` (starting from :meth:`blank_batch`). Values shared by the
batch (``L``, ``R``, ``N``, subsequence lengths) are Python ints or lists of ints; bit contents are
tensors with the batch first. Generation is vectorised over the batch: loops run over recalls or
subsequences (shared by the batch), never over samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.params import MAX_SEQUENCE_LENGTH, param
from miprometheus.problems.problem import Batch, GeneratedProblem, ProblemParams
from miprometheus.statistics import Measure, StatisticDefinition, mean_of

STORE_BIT = 0
RECALL_BIT = 1


class AlgorithmicSeqToSeqProblem(GeneratedProblem):
    """Base of the algorithmic memory tasks: generates whole batches in the canonical layout, scores recall steps.

    Subclasses implement :meth:`make_targets`; tasks with another layout override :meth:`draw_values`
    (all random draws, from ``self.generator``) and :meth:`build_batch` (deterministic layout).
    """

    @dataclasses.dataclass
    class Params(ProblemParams):
        """Parameters shared by the algorithmic sequence-to-sequence tasks."""

        control_bits: int = param(2, "number of control channels: bit 0 = store marker, bit 1 = recall marker, "
                                     "the others carry the optional control line", min=2)
        data_bits: int = param(8, "number of bits of one data item", min=1)
        min_sequence_length: int = param(1, "smallest number of items of a sequence", min=1, max=MAX_SEQUENCE_LENGTH)
        max_sequence_length: int = param(10, "largest number of items of a sequence "
                                             "(the ceiling of curriculum learning)", max=MAX_SEQUENCE_LENGTH)
        bias: float = param(0.5, "probability that a data bit is 1", min=0, max=1)
        size: int = param(1_000_000, "nominal number of samples of one training epoch (generated on the fly); "
                                     "validation and testing splits that do not set it have 1,000", min=1)
        use_mask: bool = param(True, "score only the recall steps (False: loss and accuracy over every step)")
        use_control_lines: bool = param(True, "put a nuisance control line on the recall steps "
                                              "(needs control_bits > 2)")
        randomize_control_lines: bool = param(True, "draw the control-line bit in 2..control_bits-1 per batch "
                                                    "(False: always the last bit)")

    @dataclasses.dataclass
    class CurriculumParams:
        """Curriculum learning: the longest sequence grows by one item per epoch, up to max_sequence_length."""

        initial_max_sequence_length: int = param(doc="longest sequence of the first epoch")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._validate(params)
        self.control_bits = params.control_bits
        self.data_bits = params.data_bits
        self.min_sequence_length = params.min_sequence_length
        #: the current upper bound of L; curriculum learning lowers it, never above the configured value.
        self.max_sequence_length = params.max_sequence_length
        self._curriculum_initial: int | None = None

        c, d = self.control_bits, self.data_bits
        self.output_definitions = {
            "sequences": DataDefinition((-1, -1, c + d), "float32", "inputs: control bits, then data bits"),
            "targets": DataDefinition((-1, -1, d), "float32", "desired output bits, 0 on unscored steps"),
            "masks": DataDefinition((-1, -1, 1), "uint8", "1 on the scored (recall) steps"),
            "sequences_length": DataDefinition((-1, 1), "int32", "number of items L of each sample"),
            "num_subsequences": DataDefinition((-1, 1), "int8", "number of stored subsequences"),
        }
        self.prediction_definitions = {"predictions": DataDefinition((-1, -1, d), "float32", "logits per step")}
        self.default_values = {"input_item_size": c + d, "output_item_size": d,
                               "store_bit": STORE_BIT, "recall_bit": RECALL_BIT}
        self.statistic_definitions = {
            "acc": StatisticDefinition("mean", "fraction of scored bits predicted right"),
            "seq_length": StatisticDefinition("max", "longest number of items L"),
            "max_seq_length": StatisticDefinition("max", "the current bound on L (curriculum)"),
            "batch_size": StatisticDefinition("sum", "number of samples"),
        }

    def config_error(self, message: str) -> ConfigError:
        """The error for a bad parameter of this problem (``raise self.config_error(...)``)."""
        return ConfigError(f"problem {self.name}: {message}")

    def _validate(self, p: Params) -> None:
        """Refuse parameters that do not fit together, at construction (the bounds declared on each parameter are
        checked before); a task with its own parameters extends this (super first)."""
        if p.max_sequence_length < p.min_sequence_length:
            raise self.config_error(f"min_sequence_length ({p.min_sequence_length}) must not exceed "
                                    f"max_sequence_length ({p.max_sequence_length})")

    # --- generation -----------------------------------------------------------------------------
    def generate_batch(self, batch_size: int) -> Batch:
        """One batch: the random draws of :meth:`draw_values` laid out by :meth:`build_batch`."""
        return self.build_batch(**self.draw_values(batch_size))

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """Every random draw of one batch, as the keyword arguments of :meth:`build_batch`.

        The base draws one length L for the whole batch, the control line, and i.i.d. data bits:
        ``{"items": [B, L, D], "ctrl_aux": [C]}``.
        """
        length = self.draw_length()
        ctrl_aux = self.draw_control_line()
        return {"items": self.draw_items(batch_size, length), "ctrl_aux": ctrl_aux}

    def draw_length(self) -> int:
        """A length ``L ~ U{min_sequence_length .. max_sequence_length}`` (the current, curriculum bound)."""
        return self.draw_int(self.min_sequence_length, self.max_sequence_length)

    def draw_int(self, low: int, high: int) -> int:
        """A uniform integer in ``low .. high``, both ends included, from the problem's generator."""
        return int(torch.randint(low, high + 1, (1,), generator=self.generator))

    def draw_items(self, batch_size: int, length: int) -> torch.Tensor:
        """``[B, length, D]`` i.i.d. Bernoulli(``bias``) data bits."""
        return (torch.rand(batch_size, length, self.data_bits, generator=self.generator) < self.params.bias).float()

    def draw_control_line(self) -> torch.Tensor:
        """The control vector of the recall steps for one batch (all zero without control lines)."""
        ctrl_aux = torch.zeros(self.control_bits)
        if self.params.use_control_lines and self.control_bits > 2:
            if self.params.randomize_control_lines:
                bit = self.draw_int(2, self.control_bits - 1)
            else:
                bit = self.control_bits - 1
            ctrl_aux[bit] = 1.0
        return ctrl_aux

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        """The desired outputs of the recall steps ``[B, L, D]`` for the stored items ``[B, L, D]``."""
        raise NotImplementedError

    def blank_batch(self, batch_size: int, steps: int, length: int, num_subsequences: int = 1) -> Batch:
        """A batch of ``steps`` all-zero steps (nothing scored) with ``sequences_length = length``.

        Tasks with their own layout fill ``sequences``, ``targets`` and ``masks`` in place.
        """
        c, d = self.control_bits, self.data_bits
        return {
            "sequences": torch.zeros(batch_size, steps, c + d),
            "targets": torch.zeros(batch_size, steps, d),
            "masks": torch.zeros(batch_size, steps, 1, dtype=torch.uint8),
            "sequences_length": torch.full((batch_size, 1), length, dtype=torch.int32),
            "num_subsequences": torch.full((batch_size, 1), num_subsequences, dtype=torch.int8),
        }

    def build_batch(self, items: torch.Tensor, ctrl_aux: torch.Tensor) -> Batch:
        """Lay out a batch in the canonical layout from given items ``[B, L, D]`` and control line ``[C]``.

        Deterministic: all randomness is in the arguments, so a test can feed chosen items.
        """
        batch_size, length, _ = items.shape
        c = self.control_bits
        steps = 2 * length + 2
        recall = slice(length + 2, steps)

        batch = self.blank_batch(batch_size, steps, length)
        sequences = batch["sequences"]
        sequences[:, 0, STORE_BIT] = 1.0
        sequences[:, 1:length + 1, c:] = items
        sequences[:, length + 1, RECALL_BIT] = 1.0
        sequences[:, recall, :c] = ctrl_aux.to(sequences.dtype)
        batch["targets"][:, recall] = self.make_targets(items).to(batch["targets"].dtype)
        batch["masks"][:, recall] = 1
        return batch

    # --- loss and statistics --------------------------------------------------------------------
    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Masked BCE with logits: the mean over all scored bits of the batch (plain mean without mask)."""
        targets = batch["targets"]
        bce = F.binary_cross_entropy_with_logits(predictions, targets, reduction="none")
        if not self.params.use_mask:
            return bce.mean()
        mask = batch["masks"].to(bce.dtype)
        # A batch without scored steps gives 0/0 = NaN on purpose: the trainer stops on NaN losses.
        return (bce * mask).sum() / (mask.sum() * targets.shape[-1])

    def _scored(self, batch: Batch) -> torch.Tensor:
        """The weight of every target bit: the mask broadcast over the bits, or all ones without mask."""
        targets = batch["targets"]
        if not self.params.use_mask:
            return torch.ones_like(targets)
        return batch["masks"].to(targets.dtype).expand_as(targets)

    def loss_count(self, batch: Batch, predictions: torch.Tensor) -> float:
        """The loss is a mean over the scored bits: their number weighs the batch in a split's mean."""
        return float(self._scored(batch).sum())

    def correct_bits(self, batch: Batch, predictions: torch.Tensor) -> Measure:
        """Correct scored bits and the number of scored bits; a bit is predicted 1 iff its logit is > 0.

        Counted on booleans (targets are 0/1): every training step computes it, so it is kept to a few kernels.
        """
        targets = batch["targets"]
        correct = (predictions > 0) == (targets > 0.5)
        if not self.params.use_mask:
            return mean_of(correct.sum(), correct.numel())
        scored = batch["masks"].bool()  # (batch, steps, 1): broadcast over the bits
        return mean_of((correct & scored).sum(), scored.sum() * targets.shape[-1])

    def accuracy(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Per-bit accuracy on the scored steps; a bit is predicted 1 iff its logit is > 0."""
        return torch.tensor(self.correct_bits(batch, predictions).value)

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """``acc`` (correct / scored bits), ``seq_length`` (longest L of the batch), ``max_seq_length`` (current
        bound), ``batch_size``."""
        with torch.no_grad():
            acc = self.correct_bits(batch, predictions.detach())
        return {
            "acc": acc,
            "seq_length": batch["sequences_length"].max(),  # a tensor: read back with the block, no sync here
            "max_seq_length": float(self.max_sequence_length),
            "batch_size": float(batch["sequences"].shape[0]),
        }

    # --- visualisation ----------------------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Frames over time of sample ``index``: inputs, targets, predictions (sigmoid), wrong bits and mask."""
        from miprometheus.plotting import Panel, sequence_frames, to_numpy

        c = self.control_bits
        inputs = Panel(f"inputs (control bits 0-{c - 1}, then data bits)", to_numpy(batch["sequences"][index]).T,
                       ylabel="channel")
        length = int(batch["sequences_length"][index])
        subsequences = int(batch["num_subsequences"][index])
        # With several subsequences L is the longest one; N tells the reader how many store markers to expect.
        shape = f"L = {length}" if subsequences == 1 else f"N = {subsequences}, longest L = {length}"
        return sequence_frames([inputs, *self.scored_panels(batch, index, predictions)],
                               f"{self.name}, sample {index} ({shape})")

    def scored_panels(self, batch: Batch, index: int, predictions: torch.Tensor | None, answers: bool = False,
                      mask_title: str = "mask (scored steps)") -> list[Any]:
        """The panels of every task's plot below its inputs: the targets of sample ``index``, its predictions
        (sigmoid of the logits), the wrong ones on the scored steps, and the mask; ``answers``: the task answers
        with one bit per step (titles in the singular, no bit axis)."""
        from miprometheus.plotting import Panel, to_numpy

        mask = to_numpy(batch["masks"][index]).T  # [1, T]
        targets = to_numpy(batch["targets"][index]).T  # [D, T]
        bits = {} if answers else {"ylabel": "bit"}
        panels = [Panel("target" if answers else "targets", targets, **bits)]
        if predictions is not None:
            probabilities = to_numpy(torch.sigmoid(predictions[index].detach().float())).T
            panels.append(Panel("prediction (sigmoid of the logit)" if answers
                                else "predictions (sigmoid of the logits)", probabilities, **bits))
            wrong = ((probabilities > 0.5) != (targets > 0.5)) * (mask if self.params.use_mask else 1.0)
            panels.append(Panel(f"wrong {'answers' if answers else 'bits'} (scored steps)", wrong.astype("float32"),
                                cmap="Reds", **bits))
        panels.append(Panel(mask_title, mask, cmap="Greys"))
        return panels

    # --- curriculum learning --------------------------------------------------------------------
    @classmethod
    def check_curriculum(cls, params: Params, curriculum: Any) -> str | None:
        initial = int(curriculum.initial_max_sequence_length)
        if not params.min_sequence_length <= initial <= params.max_sequence_length:
            return (f"problem {cls.__name__}: curriculum_learning.initial_max_sequence_length ({initial}) must lie "
                    f"between min_sequence_length ({params.min_sequence_length}) and max_sequence_length "
                    f"({params.max_sequence_length})")
        return None

    def curriculum_start(self, curriculum: Any) -> None:
        """Start with sequences of at most ``initial_max_sequence_length`` items."""
        why = self.check_curriculum(self.params, curriculum)
        if why:
            raise ConfigError(why)
        self._curriculum_initial = int(curriculum.initial_max_sequence_length)
        self.max_sequence_length = self._curriculum_initial

    def curriculum_update(self, episode: int, episodes_per_epoch: int) -> bool:
        """Grow the bound by one item per completed epoch; return True once it reached max_sequence_length."""
        if self._curriculum_initial is None:
            raise RuntimeError(f"{self.name}: curriculum_update called before curriculum_start")
        if episodes_per_epoch < 1:
            raise ValueError(f"episodes_per_epoch must be at least 1, got {episodes_per_epoch}")
        configured_max = self.params.max_sequence_length
        grown = self._curriculum_initial + (episode + 1) // episodes_per_epoch
        self.max_sequence_length = min(configured_max, grown)
        return self.curriculum_finished

    @property
    def curriculum_finished(self) -> bool:
        """Whether the bound reached ``max_sequence_length`` (restored with the problem's state on a resume)."""
        return self.max_sequence_length >= self.params.max_sequence_length

    # --- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The generator state plus the curriculum state (current bound and initial bound)."""
        state = super().state_dict()
        state["max_sequence_length"] = self.max_sequence_length
        state["curriculum_initial_max_sequence_length"] = self._curriculum_initial
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.max_sequence_length = int(state.get("max_sequence_length", self.params.max_sequence_length))
        self._curriculum_initial = state.get("curriculum_initial_max_sequence_length")

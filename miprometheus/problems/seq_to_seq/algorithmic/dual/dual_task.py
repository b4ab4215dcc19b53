"""The conventions the dual tasks share: markers, draws, layout, statistics.

The tasks are those of Jayram, Bouhadjar, McAvoy, Kornuta, Asseman, Rocki, Ozcan 2018 (arXiv:1809.11087), laid out
as the original MI-Prometheus's last working generators (September 2018) laid them out.

A dual task interleaves ``N`` *memory* subsequences ``x_1 .. x_N``, all recalled at the end, with a
second stream of *secondary* subsequences ``y_i`` that are ignored, carried, or answered at once
(possibly transformed). Four markers, one control bit each::

    #  bit 0  a memory subsequence x_i starts
    %  bit 1  a secondary subsequence y_i starts
    &  bit 2  respond to the secondary subsequence now
    $  bit 3  recall all memory subsequences now, x_1 .. x_N concatenated

Response steps have all-zero inputs (control and data) and are all scored; every other step has
target 0 and mask 0. There are no control lines. ``N``, the lengths ``n_i = |x_i|`` and ``m_i = |y_i|``
are shared by the batch, the bits are drawn per sample. ``sequences_length`` holds ``max_i n_i`` and
``num_subsequences`` ``2N`` (``N`` for ReadingSpan, which has no secondary stream).

A task's ``build_batch`` writes its layout as a list of blocks — :class:`Marker`, :class:`Show` (items
on the data bits), :class:`Respond` (scored steps and their targets) — which :meth:`DualTaskProblem.lay_out`
turns into the batch, so a task file reads like its layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from miprometheus.data import DataDefinition
from miprometheus.params import MAX_SEQUENCE_LENGTH, param
from miprometheus.problems.problem import Batch
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.statistics import Measure, StatisticDefinition, mean_of

#: ``#``: a memory subsequence x_i starts.
MEMORY_START = 0
#: ``%``: a secondary subsequence y_i starts.
SECONDARY_START = 1
#: ``&``: respond to the secondary subsequence now.
RESPOND_NOW = 2
#: ``$``: recall all memory subsequences now.
RECALL_MEMORY = 3

# num_subsequences is an int8 tensor holding 2N.
_MOST_SUBSEQUENCES = 63


@dataclasses.dataclass(frozen=True)
class Marker:
    """One marker step: control bit ``bit`` set, no data, not scored."""

    bit: int

    @property
    def steps(self) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class Show:
    """Steps that present ``items`` ``[B, k, D]`` on the data bits (no control bit, not scored)."""

    items: torch.Tensor

    @property
    def steps(self) -> int:
        return self.items.shape[1]


@dataclasses.dataclass(frozen=True)
class Respond:
    """Response steps: all-zero inputs, scored, with the desired outputs ``targets`` ``[B, k, D]``."""

    targets: torch.Tensor

    @property
    def steps(self) -> int:
        return self.targets.shape[1]


Block = Marker | Show | Respond


def dual_rotation_steps(amount: float, size: int) -> int:
    """The number ``k`` in ``0..size-1`` of positions of a dual task's left rotation by ``amount`` over ``size``.

    ``k = round_half_even(amount · size) mod size`` if ``-1 <= amount <= 1``, else ``round_half_even(amount) mod size``.
    The relative range is *inclusive* (``±1`` is a whole turn: no rotation), unlike the strict range of
    :func:`~miprometheus.problems.seq_to_seq.algorithmic.transforms.shift_amount` of the manipulation tasks.
    """
    # Python's round() on a float rounds half to even, as the original's numpy did: round(1.5) = round(2.5) = 2.
    return (round(amount * size) if -1 <= amount <= 1 else round(amount)) % size


def rotate_left(items: torch.Tensor, amount: float, dim: int) -> torch.Tensor:
    """Rotate ``items`` circularly to the left along ``dim``: ``out[t] = x[(t + k) mod size]``.

    ``k = dual_rotation_steps(amount, size)``. The manipulation tasks' ``rotate_seq`` / ``bit_shift``
    rotate to the right with other bounds; the dual tasks keep the legacy convention (§4.7, §4.8).
    """
    return torch.roll(items, -dual_rotation_steps(amount, items.shape[dim]), dims=dim)


class DualTaskProblem(AlgorithmicSeqToSeqProblem):
    """Base of the dual tasks: memory subsequences to recall at the end, interleaved with a second stream.

    ``build_batch`` here is the layout most dual tasks share (DistractionForget's): for each pair,
    ``# x_i % present(y_i) & D(m_i)`` with targets ``answer(y_i)`` on the ``m_i`` response steps, then
    ``$ D(n_1 + ... + n_N)`` with targets ``x_1 .. x_N``. A task changes :meth:`present` / :meth:`answer`
    or writes its own layout.
    """

    #: control bits the markers take; more are allowed and stay 0.
    marker_bits: ClassVar[int] = 4
    #: the marker of the final recall, published to models as ``recall_bit``.
    recall_marker: ClassVar[int] = RECALL_MEMORY
    #: whether the responses to the secondary stream are scored (then ``acc_memory`` and ``acc_secondary``).
    scores_secondary: ClassVar[bool] = True
    #: what the control bits mean, for the plot.
    marker_legend: ClassVar[str] = "0 #: memory starts, 1 %: secondary starts, 2 &: respond, 3 $: recall memory"

    @dataclasses.dataclass
    class Params(AlgorithmicSeqToSeqProblem.Params):
        """Parameters of the dual tasks: the algorithmic ones and the range of the number N of subsequence pairs."""

        control_bits: int = param(4, "number of control channels: bits 0-3 are the markers # % & $ "
                                     "(more are allowed and stay 0)")
        data_bits: int = param(8, "number of bits of one data item")
        min_sequence_length: int = param(1, "shortest memory subsequence x_i (items)", max=MAX_SEQUENCE_LENGTH)
        max_sequence_length: int = param(6, "longest memory subsequence x_i (the ceiling of curriculum learning)",
                                         max=MAX_SEQUENCE_LENGTH)
        use_control_lines: bool = param(False, "must stay false: the dual tasks have no control lines")
        num_subseq_min: int = param(1, "smallest number N of subsequence pairs (x_i, y_i)", min=1)
        num_subseq_max: int = param(3, "largest number N of subsequence pairs (x_i, y_i)", max=_MOST_SUBSEQUENCES)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.default_values["recall_bit"] = self.recall_marker
        self.output_definitions["sequences_length"] = DataDefinition(
            (-1, 1), "int32", "longest memory subsequence of the batch, max n_i")
        self.output_definitions["num_subsequences"] = DataDefinition(
            (-1, 1), "int8", "number of subsequences: 2N (memory and secondary)")
        self.statistic_definitions["num_subsequences"] = StatisticDefinition(
            "max", "number of subsequences (2N; N in ReadingSpan)")
        if self.scores_secondary:
            self.statistic_definitions["acc_memory"] = StatisticDefinition(
                "mean", "fraction of bits right in the final recall of the memory subsequences")
            self.statistic_definitions["acc_secondary"] = StatisticDefinition(
                "mean", "fraction of bits right in the responses to the secondary subsequences")

    def _validate(self, p: Params) -> None:
        super()._validate(p)
        if p.control_bits < self.marker_bits:
            raise self.config_error(f"control_bits must be at least {self.marker_bits} (one per marker), "
                                    f"got {p.control_bits}")
        if p.use_control_lines:
            raise self.config_error("the dual tasks have no control lines: set use_control_lines to false")
        if p.num_subseq_max < p.num_subseq_min:
            raise self.config_error(f"num_subseq_min ({p.num_subseq_min}) must not exceed "
                                    f"num_subseq_max ({p.num_subseq_max})")

    # --- draws ------------------------------------------------------------------------------------
    def draw_count(self) -> int:
        """The number of subsequence pairs ``N ~ U{num_subseq_min .. num_subseq_max}`` of a batch."""
        return self.draw_int(self.params.num_subseq_min, self.params.num_subseq_max)

    def draw_memory(self, batch_size: int, count: int) -> list[torch.Tensor]:
        """``count`` memory subsequences ``[B, n_i, D]``, each length ``n_i`` drawn by :meth:`draw_length`."""
        lengths = [self.draw_length() for _ in range(count)]
        return [self.draw_items(batch_size, length) for length in lengths]

    # --- layout -----------------------------------------------------------------------------------
    def present(self, secondary: torch.Tensor) -> torch.Tensor:
        """What is shown of a secondary subsequence ``[B, m, D]`` (the subsequence itself unless a task says)."""
        return secondary

    def answer(self, secondary: torch.Tensor) -> torch.Tensor:
        """The desired response to a secondary subsequence ``[B, m, D]`` (the subsequence itself unless a task says)."""
        return secondary

    def build_batch(self, memory: list[torch.Tensor], secondary: list[torch.Tensor]) -> Batch:
        """``[# x_i % present(y_i) & D(m_i)]_i $ D(Σ n_i)``: each ``y_i`` answered at once, then all ``x_i`` recalled.

        ``memory[i]`` is ``x_i`` ``[B, n_i, D]`` and ``secondary[i]`` is ``y_i`` ``[B, m_i, D]``.
        """
        blocks: list[Block] = []
        for x, y in zip(memory, secondary, strict=True):
            blocks += [Marker(MEMORY_START), Show(x), Marker(SECONDARY_START), Show(self.present(y)),
                       Marker(RESPOND_NOW), Respond(self.answer(y))]
        return self.lay_out(blocks + self.final_recall(memory), memory)

    @staticmethod
    def final_recall(memory: list[torch.Tensor]) -> list[Block]:
        """``$`` followed by the recall of ``x_1 .. x_N`` concatenated."""
        return [Marker(RECALL_MEMORY), Respond(torch.cat(memory, dim=1))]

    def lay_out(self, blocks: list[Block], memory: list[torch.Tensor], num_subsequences: int | None = None) -> Batch:
        """The batch of ``blocks`` in order; ``sequences_length = max n_i``, ``num_subsequences`` 2N by default."""
        if not memory:
            raise ValueError(f"{self.name}: a batch needs at least one memory subsequence")
        batch_size = memory[0].shape[0]
        steps = sum(block.steps for block in blocks)
        longest = max(x.shape[1] for x in memory)
        batch = self.blank_batch(batch_size, steps, longest, 2 * len(memory) if num_subsequences is None
                                 else num_subsequences)
        sequences, targets, masks = batch["sequences"], batch["targets"], batch["masks"]
        c = self.control_bits
        t = 0
        for block in blocks:
            span = slice(t, t + block.steps)
            if isinstance(block, Marker):
                sequences[:, t, block.bit] = 1.0
            elif isinstance(block, Show):
                sequences[:, span, c:] = block.items
            else:
                targets[:, span] = block.targets
                masks[:, span] = 1
            t += block.steps
        return batch

    # --- statistics -------------------------------------------------------------------------------
    def stream_accuracies(self, batch: Batch, predictions: torch.Tensor) -> dict[str, Measure]:
        """``acc_memory`` (scored steps after the last marker: the final recall) and ``acc_secondary`` (before it)."""
        sequences, targets = batch["sequences"], batch["targets"]
        # The layout is shared by the batch, so the first sample shows where the final recall starts: after its
        # last step with a marker, found on the batch's device (no step index read back to the host).
        steps = torch.arange(sequences.shape[1], device=sequences.device)
        marked = sequences[0, :, :self.control_bits].sum(-1) != 0
        after = (steps > torch.where(marked, steps, -1).max()).view(1, -1, 1)
        scored = batch["masks"].bool()
        correct = ((predictions > 0).to(targets.dtype) == targets).to(targets.dtype)
        result = {}
        for name, steps in (("acc_memory", scored & after), ("acc_secondary", scored & ~after)):
            weights = steps.to(targets.dtype).expand_as(targets)
            result[name] = mean_of((correct * weights).sum(), weights.sum())
        return result

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """The algorithmic statistics, ``num_subsequences`` and, where both streams are scored, their accuracies."""
        stats = super().statistics(batch, predictions)
        stats["num_subsequences"] = batch["num_subsequences"].max()  # a tensor, read back later
        if self.scores_secondary:
            with torch.no_grad():
                stats.update(self.stream_accuracies(batch, predictions.detach()))
        return stats

    # --- visualisation ----------------------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Frames over time of sample ``index``: markers, data bits, targets, predictions (sigmoid), errors, mask."""
        from miprometheus.plotting import Panel, sequence_frames, to_numpy

        c = self.control_bits
        inputs = to_numpy(batch["sequences"][index]).T  # [C + D, T]
        panels = [Panel(f"markers ({self.marker_legend})", inputs[:c], ylabel="control bit"),
                  Panel("data bits (memory and secondary items)", inputs[c:], ylabel="bit"),
                  *self.scored_panels(batch, index, predictions, mask_title="mask (response steps)")]
        count = int(batch["num_subsequences"][index])
        longest = int(batch["sequences_length"][index])
        return sequence_frames(panels, f"{self.name}, sample {index} ({count} subsequences, "
                                       f"longest memory subsequence {longest})")


class PairedSubsequenceTask(DualTaskProblem):
    """Base of the dual tasks with secondary subsequences of drawn lengths: pairs ``(x_i, y_i)``, ``i = 1..N``.

    ``m_i ~ U{min_secondary_length .. max_secondary_length}``, which default to the range of the memory
    lengths (the original's definition). Curriculum learning grows both bounds by one item per epoch, each
    from ``initial_max_sequence_length`` (kept inside its range) up to its configured maximum.
    """

    @dataclasses.dataclass
    class Params(DualTaskProblem.Params):
        """Parameters of the paired dual tasks: the dual ones and the range of the secondary lengths m_i."""

        min_secondary_length: int | None = param(None, "shortest secondary subsequence y_i; null: "
                                                       "min_sequence_length", min=1, max=MAX_SEQUENCE_LENGTH)
        max_secondary_length: int | None = param(None, "longest secondary subsequence y_i (a ceiling of "
                                                       "curriculum learning); null: max_sequence_length",
                                                       max=MAX_SEQUENCE_LENGTH)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.min_secondary_length, self.configured_max_secondary_length = self.secondary_range(params)
        #: the current upper bound of m_i; curriculum learning lowers it, never above the configured value.
        self.max_secondary_length = self.configured_max_secondary_length
        self._secondary_initial: int | None = None
        self.statistic_definitions["max_secondary_length"] = StatisticDefinition(
            "max", "the current bound on the secondary lengths m_i (curriculum)")

    @staticmethod
    def secondary_range(p: Params) -> tuple[int, int]:
        """The configured range of ``m_i``; an unset end is the memory lengths'."""
        low = p.min_sequence_length if p.min_secondary_length is None else p.min_secondary_length
        high = p.max_sequence_length if p.max_secondary_length is None else p.max_secondary_length
        return low, high

    def _validate(self, p: Params) -> None:
        super()._validate(p)
        low, high = self.secondary_range(p)
        if high < low:
            raise self.config_error(f"the secondary lengths' minimum ({low}) must not exceed their maximum ({high})")

    def draw_values(self, batch_size: int) -> dict[str, Any]:
        """``N``, then the memory subsequences and the secondary ones: ``{"memory": [...], "secondary": [...]}``."""
        count = self.draw_count()
        memory = self.draw_memory(batch_size, count)
        lengths = [self.draw_int(self.min_secondary_length, self.max_secondary_length) for _ in range(count)]
        return {"memory": memory, "secondary": [self.draw_items(batch_size, length) for length in lengths]}

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """The dual-task statistics and ``max_secondary_length`` (the current curriculum bound of ``m_i``)."""
        stats = super().statistics(batch, predictions)
        stats["max_secondary_length"] = float(self.max_secondary_length)
        return stats

    # --- curriculum learning on both lengths ------------------------------------------------------
    def curriculum_start(self, curriculum: Any) -> None:
        """Start both bounds at ``initial_max_sequence_length`` (the secondary one kept inside its range)."""
        super().curriculum_start(curriculum)
        initial = int(curriculum.initial_max_sequence_length)
        self._secondary_initial = min(self.configured_max_secondary_length, max(self.min_secondary_length, initial))
        self.max_secondary_length = self._secondary_initial

    def curriculum_update(self, episode: int, episodes_per_epoch: int) -> bool:
        """Grow both bounds by one item per completed epoch; True once both reached their maxima."""
        # The base grows the memory bound; what it returns is curriculum_finished, read before the secondary
        # bound grows below, so the answer is asked again afterwards.
        super().curriculum_update(episode, episodes_per_epoch)
        grown = self._secondary_initial + (episode + 1) // episodes_per_epoch
        self.max_secondary_length = min(self.configured_max_secondary_length, grown)
        return self.curriculum_finished

    @property
    def curriculum_finished(self) -> bool:
        """Whether both bounds reached their maxima."""
        return super().curriculum_finished and self.max_secondary_length >= self.configured_max_secondary_length

    def state_dict(self) -> dict[str, Any]:
        """The algorithmic state plus the secondary bound and its curriculum start."""
        state = super().state_dict()
        state["max_secondary_length"] = self.max_secondary_length
        state["curriculum_initial_max_secondary_length"] = self._secondary_initial
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.max_secondary_length = int(state.get("max_secondary_length", self.configured_max_secondary_length))
        self._secondary_initial = state.get("curriculum_initial_max_secondary_length")

"""MAES: the Memory-Augmented Encoder-Solver; its encoder (MAE) only writes, its solver (MAS) only reads
(Jayram, Kornuta, McAvoy, Ozcan 2018, arXiv:1809.10847).

Also the mode switch that the encoder-solver models share (:func:`phases`): which samples are encoding and which
are solving at each step, decided per sample from the store and recall bits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch

from miprometheus.errors import ConfigError, DataError
from miprometheus.models.memory.addressing import erase_and_add, location_addressing, one_hot_address, oneplus, read
from miprometheus.models.memory.controllers import CONTROLLERS, NON_LINEARITIES, Controller
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


class Phases(NamedTuple):
    """The phases of a batch of an encoder-solver: per sample on the device, per step on the host."""

    solving: torch.Tensor  # [B, T]: the sample is in Solve mode at the step
    switching: torch.Tensor  # [B, T]: the sample's first step of a Solve phase
    encoding_any: list[bool]  # [T]: some sample encodes at the step (the encoder runs)
    solving_any: list[bool]  # [T]: some sample solves at the step (the solver runs)
    switching_any: list[bool]  # [T]: some sample starts to solve at the step


def phases(sequences: torch.Tensor, store_bit: int, recall_bit: int, switch_back: bool = False) -> Phases:
    """Per sample and step, whether an encoder-solver is in Solve mode or Encode mode, and per step which cells run.

    Every sample starts in Encode mode (also when its first item has neither bit set). An item with the recall bit
    (and not the store bit) switches to Solve mode at that item. Without ``switch_back`` Solve mode lasts to the end
    (MAES, EncoderSolverNTM); with it an item with the store bit switches back to Encode (EncoderSolverLSTM). Each
    sample decides for itself: the original followed batch element 0 only. An item with both bits set is
    a DataError, as the original stopped there.
    """
    store = sequences[..., store_bit] > 0.5
    recall = sequences[..., recall_bit] > 0.5
    both = store & recall
    if not switch_back:
        solving = torch.cummax(recall.to(torch.int8), dim=1).values.bool()
    else:
        # The mode is the one of the latest marker seen so far: gather the recall bit at the last marked step.
        steps = torch.arange(sequences.shape[1], device=sequences.device).expand_as(store)
        last = torch.cummax(torch.where(store | recall, steps, -1), dim=1).values
        solving = recall.gather(1, last.clamp_min(0)) & (last >= 0)
    switching = solving & ~torch.nn.functional.pad(solving, (1, 0))[:, :-1]
    # The one device-to-host copy of a forward: which cells the step loop runs, and whether an item is bad.
    encoding_any, solving_any, switching_any, bad = torch.stack(
        [(~solving).any(0), solving.any(0), switching.any(0), both.any(0)]).tolist()
    if any(bad):
        sample, step = (int(i) for i in both.nonzero()[0])
        raise DataError(f"sample {sample}, item {step} has both the store bit ({store_bit}) and the recall bit "
                        f"({recall_bit}) set: an encoder-solver cannot tell whether to encode or to solve")
    return Phases(solving, switching, encoding_any, solving_any, switching_any)


def solve_mode(sequences: torch.Tensor, store_bit: int, recall_bit: int, switch_back: bool = False) -> torch.Tensor:
    """Per sample and step, whether an encoder-solver is in Solve mode (True) or Encode mode (False): ``[B, T]``
    (see :func:`phases`)."""
    return phases(sequences, store_bit, recall_bit, switch_back).solving


def select(mask: torch.Tensor, new: Any, old: Any) -> Any:
    """``new`` where ``mask [B]`` is True, else ``old``: for tensors ``[B, ...]``, tuples of them (LSTM states) or
    None (a feed-forward controller's state)."""
    if new is None:
        return None
    if isinstance(new, tuple):
        return tuple(select(mask, n, o) for n, o in zip(new, old))
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


class MemoryAugmentedEncoder(torch.nn.Module):
    """MAE, the encoder cell: a controller on the input alone and one write head with location addressing only.

    ``h_t = ctrl(x_t)``; ``s = softmax``, ``gamma = oneplus``, ``e = sigmoid``, ``a = sigmoid`` from ``W h_t``;
    ``w_t = normalize((circconv(w_{t-1}, s) + 1e-12) ** gamma)``; ``M_t = M_{t-1} (1 - w_t e^T) + w_t a^T``
    (the new attention, unlike the DWM); ``y_t = W_o h_t`` (store-phase logits, which the mask leaves unscored).
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, controller: str, non_linearity: str,
                 content_bits: int, shift_size: int) -> None:
        super().__init__()
        self.sizes = [shift_size, 1, content_bits, content_bits]  # shift, gamma, erase, add: the original's order
        self.controller = Controller(controller, input_size, hidden_size, non_linearity)
        self.interface = torch.nn.Linear(hidden_size, sum(self.sizes))
        self.output = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, state: Any, memory: torch.Tensor,
                attention: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
        """One step: ``(logits [B, O], controller state, memory [B, N, C], write attention [B, N])``."""
        h, state = self.controller(x, state)
        shift, gamma, erase, add = torch.split(self.interface(h), self.sizes, dim=-1)
        attention = location_addressing(attention, torch.softmax(shift, dim=-1), oneplus(gamma))
        memory = erase_and_add(memory, attention, torch.sigmoid(erase), torch.sigmoid(add))
        return self.output(h), state, memory, attention


class MemoryAugmentedSolver(torch.nn.Module):
    """MAS, the solver cell: its own controller on the input alone and one read head over the encoder's memory.

    ``h_t = ctrl(x_t)``; gates ``g = sigmoid`` (3, independent), ``s = softmax``, ``gamma = oneplus`` from ``W h_t``;
    ``w_t = g_0 normalize((circconv(w_{t-1}, s) + 1e-12) ** gamma) + g_1 w^enc + g_2 delta_0`` (shift and sharpen
    before the gates, the reverse of the NTM); ``r_t = w_t^T M^enc``; ``y_t = W_o [h_t; r_t]``. The gates are not
    normalised, so ``w_t`` need not sum to 1: faithful to the paper's code, kept on purpose.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, controller: str, non_linearity: str,
                 content_bits: int, shift_size: int) -> None:
        super().__init__()
        self.sizes = [3, shift_size, 1]  # gates, shift, gamma: the original's order
        self.controller = Controller(controller, input_size, hidden_size, non_linearity)
        self.interface = torch.nn.Linear(hidden_size, sum(self.sizes))
        self.output = torch.nn.Linear(hidden_size + content_bits, output_size)

    def forward(self, x: torch.Tensor, state: Any, memory: torch.Tensor, attention: torch.Tensor,
                encoder_attention: torch.Tensor,
                delta0: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
        """One step: ``(logits [B, O], controller state, read attention [B, N], gates [B, 3])``."""
        h, state = self.controller(x, state)
        gates, shift, gamma = torch.split(self.interface(h), self.sizes, dim=-1)
        gates = torch.sigmoid(gates)
        located = location_addressing(attention, torch.softmax(shift, dim=-1), oneplus(gamma))
        attention = gates[:, 0:1] * located + gates[:, 1:2] * encoder_attention + gates[:, 2:3] * delta0
        return self.output(torch.cat([h, read(memory, attention)], dim=-1)), state, attention, gates


@dataclass
class MAESState:
    """The recurrent state of MAES for one batch, passed from step to step; nothing of it lives on the module
    (the original kept the final encoder attention and delta_0 on the solver module)."""

    encoder: Any  # the encoder controller's state
    memory: torch.Tensor  # [B, N, C]: written by the encoder; frozen for a sample once it solves
    encoder_attention: torch.Tensor  # [B, N]: the encoder's last write attention
    solver: Any  # the solver controller's state
    solver_attention: torch.Tensor  # [B, N]
    final_encoder_attention: torch.Tensor  # [B, N]: the encoder's attention when the sample switched to Solve
    delta0: torch.Tensor  # [B, N]: the one-hot attention on address 0


@register_model
class MAES(Model):
    """Memory-Augmented Encoder-Solver (Jayram et al. 2018): an encoder writes a memory that a solver reads.

    Paper: "Using Multi-task and Transfer Learning to Solve Working Memory Tasks", arXiv:1809.10847.

    Two controllers share one external memory. The encoder (MAE) runs in the store phase and only writes, with
    location addressing; the solver (MAS) runs from the recall marker on and only reads, from the final encoder
    memory, which it never changes. Each sample switches from Encode to Solve at its first item with the recall bit
    (and never back); samples of a batch share their phase boundaries in the generated tasks, but each decides for
    itself. At the switch the solver's controller gets the encoder's state (``pass_cell_state``), its attention
    ``delta_0``, and its gates mix its own shifted attention with the encoder's last write attention and
    ``delta_0``; the gates are three independent sigmoids, not normalised (the paper's code, kept on purpose).

    Transfer (the paper trains encoders, then freezes them on other tasks): the encoder's parameters are the
    submodule ``encoder`` (keys ``encoder.``), so ``model.init_from: {path: RUN, prefix: {"encoder.": "encoder."}}``
    loads a trained encoder alone and ``model.freeze: [encoder]`` keeps it fixed.

    ``num_addresses: -1`` gives ``N = max(T, S)`` per batch. ``sequences`` [B, T, I] -> logits [B, T, O]. The plot
    shows the memory at each step, the encoder's write attention, the solver's read attention and gates over time.
    """

    @dataclass
    class Params:
        """Parameters of MAES (defaults: configs/maes_baselines/maes/default_maes.yaml of the original)."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True, min=1)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True, min=1)
        store_bit: int = param(doc="input channel of the store marker (Encode mode)", from_problem=True)
        recall_bit: int = param(doc="input channel of the recall marker (switches to Solve mode)", from_problem=True)
        hidden_size: int = param(20, "units H of each controller (encoder and solver)", min=1, max=MAX_UNITS)
        controller: str = param("rnn", "controller kind of both cells: rnn, lstm, gru, feedforward, ffgru")
        non_linearity: str = param("sigmoid", "non-linearity of the rnn controller: sigmoid, tanh, relu, none")
        num_content_bits: int = param(15, "width C of one memory slot", min=1)
        num_addresses: int = param(-1, "number of memory slots N; -1: N = max(T, shift_size), T of each batch")
        shift_size: int = param(3, "width S of the shift kernels of the encoder and the solver (odd)", min=1)
        pass_cell_state: bool = param(True, "the solver's controller starts from the encoder's final state "
                                            "(False: from zero)")

    def __init__(self, params: MAES.Params) -> None:
        super().__init__(params)
        self._check(params)
        self.store_bit, self.recall_bit = int(params.store_bit), int(params.recall_bit)
        self.num_addresses, self.shift_size = int(params.num_addresses), int(params.shift_size)
        self.num_content_bits = int(params.num_content_bits)
        self.pass_cell_state = bool(params.pass_cell_state)
        sizes = (int(params.input_item_size), int(params.output_item_size), int(params.hidden_size),
                 params.controller, params.non_linearity, self.num_content_bits, self.shift_size)
        self.encoder = MemoryAugmentedEncoder(*sizes)
        self.solver = MemoryAugmentedSolver(*sizes)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    @staticmethod
    def _check(p: MAES.Params) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"model MAES: {message}")

        for name in ("store_bit", "recall_bit"):
            if not 0 <= int(getattr(p, name)) < int(p.input_item_size):
                fail(f"{name} must be an input channel (0..{int(p.input_item_size) - 1}), got {getattr(p, name)}")
        if p.store_bit == p.recall_bit:
            fail(f"store_bit and recall_bit must be different channels, both are {p.store_bit}")
        if p.shift_size % 2 == 0:
            fail(f"shift_size must be odd (3 = shifts -1, 0, +1), got {p.shift_size}")
        if p.num_addresses != -1 and p.num_addresses < p.shift_size:
            fail(f"num_addresses must be -1 (N = T) or at least shift_size ({p.shift_size}), got {p.num_addresses}")
        if p.controller not in CONTROLLERS:
            fail(f"controller must be one of {', '.join(CONTROLLERS)}, got '{p.controller}'")
        if p.non_linearity not in NON_LINEARITIES:
            fail(f"non_linearity must be one of {', '.join(NON_LINEARITIES)}, got '{p.non_linearity}'")

    def memory_size(self, steps: int) -> int:
        """The number of slots N for a batch of ``steps`` items."""
        return self.num_addresses if self.num_addresses > 0 else max(steps, self.shift_size)

    def init_state(self, batch_size: int, num_addresses: int, device: Any, dtype: torch.dtype) -> MAESState:
        """The state before the first item: zero memory and controllers, both attentions on address 0."""
        delta0 = one_hot_address(batch_size, num_addresses, device, dtype)
        return MAESState(
            encoder=self.encoder.controller.init_state(batch_size, device, dtype),
            memory=torch.zeros(batch_size, num_addresses, self.num_content_bits, device=device, dtype=dtype),
            encoder_attention=delta0, solver=self.solver.controller.init_state(batch_size, device, dtype),
            solver_attention=delta0, final_encoder_attention=delta0, delta0=delta0)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        b, steps, _ = x.shape
        solving, switching, encoding_any, solving_any, switching_any = phases(x, self.store_bit, self.recall_bit)
        state = self.init_state(b, self.memory_size(steps), x.device, x.dtype)
        outputs, record = [], {"memory": [], "write_attention": [], "read_attention": [], "gates": []}
        for t in range(steps):
            # Both cells run only at a step where some samples encode and others solve; then each sample keeps
            # the result of its own mode. Otherwise the one cell that runs updates every sample.
            mixed = encoding_any[t] and solving_any[t]
            encoding, now_solving = ~solving[:, t], solving[:, t]
            zero, no_gates = torch.zeros_like(state.delta0), x.new_zeros(b, 3)
            write_attention, read_attention, gates = zero, zero, no_gates
            if encoding_any[t]:
                encoder_out, encoder, memory, attention = self.encoder(x[:, t], state.encoder, state.memory,
                                                                        state.encoder_attention)
                if mixed:  # samples already solving keep their encoder state, and so their final memory
                    encoder, memory = select(encoding, encoder, state.encoder), select(encoding, memory, state.memory)
                    attention = select(encoding, attention, state.encoder_attention)
                state = replace(state, encoder=encoder, memory=memory, encoder_attention=attention)
                write_attention = select(encoding, attention, zero) if mixed else attention
            if switching_any[t]:
                now = switching[:, t]
                start = state.encoder if self.pass_cell_state else self.solver.controller.init_state(b, x.device,
                                                                                                       x.dtype)
                state = replace(state, solver=select(now, start, state.solver),
                                solver_attention=select(now, state.delta0, state.solver_attention),
                                final_encoder_attention=select(now, state.encoder_attention,
                                                               state.final_encoder_attention))
            if solving_any[t]:
                solver_out, solver, attention, gates = self.solver(x[:, t], state.solver, state.memory,
                                                                   state.solver_attention,
                                                                   state.final_encoder_attention, state.delta0)
                if mixed:
                    solver = select(now_solving, solver, state.solver)
                    attention = select(now_solving, attention, state.solver_attention)
                    gates = select(now_solving, gates, no_gates)
                state = replace(state, solver=solver, solver_attention=attention)
                read_attention = select(now_solving, attention, zero) if mixed else attention
            if mixed:
                outputs.append(select(now_solving, solver_out, encoder_out))
            else:
                outputs.append(encoder_out if encoding_any[t] else solver_out)
            if self.recording:
                for key, value in (("memory", state.memory), ("write_attention", write_attention),
                                   ("read_attention", read_attention), ("gates", gates)):
                    record[key].append(value.detach())
        if self.recording:
            # memory [B, T, N, C] after step t; write / read attention [B, T, N] (0 in the other phase);
            # gates [B, T, 3]; solving [B, T].
            self.internals.update({key: torch.stack(values, dim=1) for key, values in record.items()})
            self.internals["solving"] = solving
        return torch.stack(outputs, dim=1)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index``: the memory at each step, the encoder's write attention, the
        solver's read attention and gates, and the mode (from a recorded forward)."""
        if "memory" not in self.internals:
            return None
        from miprometheus.models.memory.figures import maes_frames

        return maes_frames(self.internals, index, f"{self.name}, sample {index}")

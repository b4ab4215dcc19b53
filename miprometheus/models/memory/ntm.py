"""Neural Turing Machine: a controller with R read heads and one write head on an external memory.

Graves, Wayne, Danihelka, "Neural Turing Machines", arXiv:1410.5401, 2014 (§3). One step of the cell:

1. controller ``h_t = Ctrl([x_t; r_{t-1}])``;
2. the interface turns ``h_t`` into every head's parameters (key, strength, gate, shift, sharpening; erase and add
   for the write head);
3. every head addresses the previous memory ``M_{t-1}``: content, interpolation, circular shift, sharpening;
4. reads before the write: ``r_t = w^r_t M_{t-1}``; then ``M_t = M_{t-1} (1 - w^w e^T) + w^w a^T``;
5. output logits ``y_t = W_o [h_t; r_t] + b_o``.

The maths of addressing lives in :mod:`miprometheus.models.memory.addressing`, the controllers in
:mod:`miprometheus.models.memory.controllers`; the encoder-solver NTM reuses :class:`NTMCell`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from miprometheus.errors import ConfigError
from miprometheus.models.memory import addressing
from miprometheus.models.memory.controllers import Controller
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model

#: the controllers an NTM may use (``controllers.CONTROLLERS`` without ThalNet's ffgru).
NTM_CONTROLLERS = ("lstm", "gru", "rnn", "feedforward")
MEMORY_INITS = ("constant", "zero", "learned")


class NTMState(NamedTuple):
    """The recurrent state of an NTM between two steps; heads are ordered read heads 0..R-1, then the write head."""

    controller: Any         # the controller's state (a tensor, an (h, c) pair, or None)
    memory: torch.Tensor    # M_{t-1} [B, N, C]
    weights: torch.Tensor   # w_{t-1} of every head [B, R + 1, N]
    reads: torch.Tensor     # r_{t-1} [B, R, C]


class NTMInterface(torch.nn.Module):
    """The heads' parameters from the controller output: one linear layer, sliced and squashed (steps 2-4).

    Each read head gets a key (C values), a key strength, an interpolation gate, a shift kernel (S) and a
    sharpening exponent; the write head the same plus erase and add vectors (C each); without content addressing
    only the shift and the sharpening (and erase, add). One layer for all heads computes the same as one layer per
    head (its rows are the heads' layers stacked, grouped by kind), in one matrix product instead of R + 1, and
    each squashing runs once on the values of every head: the step costs fewer, larger operations.
    """

    def __init__(self, hidden_size: int, num_read_heads: int, num_content_bits: int, shift_size: int,
                 use_content_addressing: bool) -> None:
        super().__init__()
        heads, c = num_read_heads + 1, num_content_bits
        self.heads, self.num_content_bits, self.shift_size = heads, c, shift_size
        self.use_content_addressing = use_content_addressing
        # Grouped by squashing: sigmoid (keys, gates, erase, add), oneplus (strengths, gammas), softmax (shifts).
        self.sigmoid_size = (heads * c + heads if use_content_addressing else 0) + 2 * c
        self.oneplus_size = 2 * heads if use_content_addressing else heads
        self.layer = torch.nn.Linear(hidden_size, self.sigmoid_size + self.oneplus_size + heads * shift_size)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The squashed parameters of every head, ``[B, R + 1, ...]`` (read heads, then the write head):
        ``key [B, R+1, C]`` in (0, 1), ``strength``, ``gate``, ``gamma`` ``[B, R+1, 1]``, ``shift [B, R+1, S]``;
        ``erase`` and ``add`` ``[B, C]`` in (0, 1). ``key``, ``strength`` and ``gate`` are None without content
        addressing."""
        batch_size, heads, c = h.shape[0], self.heads, self.num_content_bits
        squashed, strengths, shift = self.layer(h).split(
            [self.sigmoid_size, self.oneplus_size, heads * self.shift_size], dim=-1)
        squashed, strengths = torch.sigmoid(squashed), addressing.oneplus(strengths)
        params: dict[str, torch.Tensor | None] = {
            "shift": torch.softmax(shift.view(batch_size, heads, self.shift_size), dim=-1),
            "erase": squashed[:, -2 * c:-c], "add": squashed[:, -c:], "key": None, "strength": None, "gate": None,
            "gamma": strengths[:, -heads:].view(batch_size, heads, 1)}
        if self.use_content_addressing:
            params.update(key=squashed[:, :heads * c].view(batch_size, heads, c),
                          gate=squashed[:, heads * c:heads * c + heads].view(batch_size, heads, 1),
                          strength=strengths[:, :heads].view(batch_size, heads, 1))
        return params


class NTMCell(torch.nn.Module):
    """One NTM step, vectorised over the batch and the heads: ``(x_t, state) -> (logits y_t, state, internals)``."""

    def __init__(self, input_size: int, output_size: int, controller: str = "rnn", hidden_size: int = 100,
                 non_linearity: str = "tanh", num_read_heads: int = 1, num_content_bits: int = 10,
                 shift_size: int = 3, use_content_addressing: bool = True, memory_init: str = "constant",
                 memory_init_value: float = 0.01) -> None:
        super().__init__()
        self.num_read_heads, self.num_content_bits = num_read_heads, num_content_bits
        self.memory_init, self.memory_init_value = memory_init, float(memory_init_value)
        self.controller = Controller(controller, input_size + num_read_heads * num_content_bits, hidden_size,
                                     non_linearity)
        self.interface = NTMInterface(hidden_size, num_read_heads, num_content_bits, shift_size,
                                      use_content_addressing)
        self.output = torch.nn.Linear(hidden_size + num_read_heads * num_content_bits, output_size)
        if memory_init == "learned":
            # One learned content vector for every address, so the memory can have any number of addresses (N = T).
            self.memory_bias = torch.nn.Parameter(torch.full((num_content_bits,), self.memory_init_value))

    def initial_memory(self, batch_size: int, num_addresses: int, device: Any = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``M_0 [B, N, C]``: zero, a small constant (Collier & Beel 2018), or the learned content vector."""
        shape = (batch_size, num_addresses, self.num_content_bits)
        if self.memory_init == "zero":
            return torch.zeros(shape, device=device, dtype=dtype)
        if self.memory_init == "constant":
            return torch.full(shape, self.memory_init_value, device=device, dtype=dtype)
        return self.memory_bias.to(dtype).expand(shape)

    def init_state(self, batch_size: int, num_addresses: int, device: Any = None,
                   dtype: torch.dtype = torch.float32) -> NTMState:
        """The initial state: zero controller state, ``M_0``, every head on address 0 (``delta_0``), its reads."""
        return self.state_over(self.initial_memory(batch_size, num_addresses, device, dtype))

    def state_over(self, memory: torch.Tensor) -> NTMState:
        """A fresh state (controller at zero, heads on address 0) over a given memory ``[B, N, C]``."""
        batch_size, num_addresses, _ = memory.shape
        heads = self.num_read_heads + 1
        weights = addressing.one_hot_address(batch_size * heads, num_addresses, memory.device, memory.dtype)
        weights = weights.view(batch_size, heads, num_addresses)
        return NTMState(self.controller.init_state(batch_size, memory.device, memory.dtype), memory, weights,
                        torch.bmm(weights[:, :-1], memory))

    def forward(self, x: torch.Tensor, state: NTMState) -> tuple[torch.Tensor, NTMState, dict[str, torch.Tensor]]:
        """Logits ``[B, O]`` for the item ``x [B, I]``, the new state, and this step's addressing (for plots)."""
        memory, previous = state.memory, state.weights
        batch_size, num_addresses, c = memory.shape
        heads = self.num_read_heads + 1
        h, controller = self.controller(torch.cat([x, state.reads.flatten(1)], dim=-1), state.controller)
        p = self.interface(h)

        # Every head addresses M_{t-1}; the heads are folded into the batch, so one call addresses all of them.
        def folded(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.reshape(batch_size * heads, -1)

        shared = memory.unsqueeze(1).expand(batch_size, heads, num_addresses, c).reshape(-1, num_addresses, c)
        address = addressing.ntm_addressing(shared, folded(previous), folded(p["key"]), folded(p["strength"]),
                                            folded(p["gate"]), folded(p["shift"]), folded(p["gamma"]))
        weights = address["weights"].view(batch_size, heads, num_addresses)

        reads = torch.bmm(weights[:, :-1], memory)  # read before write: r_t = w^r_t M_{t-1}  [B, R, C]
        memory = addressing.erase_and_add(memory, weights[:, -1], p["erase"], p["add"])
        logits = self.output(torch.cat([h, reads.flatten(1)], dim=-1))
        step = {"weights": weights, "content": address["content"].view(batch_size, heads, num_addresses),
                "shift": p["shift"], "gamma": p["gamma"].squeeze(-1)}
        if p["gate"] is not None:
            step["gate"] = p["gate"].squeeze(-1)
        return logits, NTMState(controller, memory, weights, reads), step


def stack_steps(steps: list[dict[str, torch.Tensor]], memories: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The recorded steps as detached ``[B, T, ...]`` tensors, with the memory after each step's write."""
    internals = {key: torch.stack([s[key] for s in steps], dim=1).detach() for key in steps[0]}
    internals["memory"] = torch.stack(memories, dim=1).detach()  # [B, T, N, C]
    return internals


def unroll(cell: torch.nn.Module, x: torch.Tensor, state: Any,
           recording: bool) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
    """A memory cell (the NTM's, the DNC's) run over the items ``x`` [B, T, I] from ``state``: the logits
    [B, T, O], the last state and, when ``recording``, every step's addressing over time with the memory after
    each write (:func:`stack_steps`; empty otherwise)."""
    outputs, recorded, memories = [], [], []
    for t in range(x.shape[1]):
        logits, state, step = cell(x[:, t], state)
        outputs.append(logits)
        if recording:
            recorded.append(step)
            memories.append(state.memory)
    return torch.stack(outputs, dim=1), state, stack_steps(recorded, memories) if recording else {}


def build_cell(p: Any) -> NTMCell:
    """An :class:`NTMCell` from the NTM parameters ``p`` (shared by the NTM and the encoder-solver NTM); the
    bounds declared on the parameters were checked when the model was made."""
    checks = [
        (p.controller in NTM_CONTROLLERS, f"controller must be one of {', '.join(NTM_CONTROLLERS)}, "
                                          f"got '{p.controller}'"),
        (p.shift_size % 2 == 1,
         f"shift_size must be odd (shifts -(S-1)/2 .. +(S-1)/2), got {p.shift_size}"),
        (p.memory_init in MEMORY_INITS, f"memory_init must be one of {', '.join(MEMORY_INITS)}, "
                                        f"got '{p.memory_init}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"model {p.__class__.__qualname__.split('.')[0]}: {message}")
    return NTMCell(p.input_item_size, p.output_item_size, p.controller, p.hidden_size, p.non_linearity,
                   p.num_read_heads, p.num_content_bits, p.shift_size, p.use_content_addressing, p.memory_init,
                   p.memory_init_value)


@register_model
class NTM(Model):
    """Neural Turing Machine (Graves et al. 2014): a controller that reads and writes an external memory.

    ``sequences`` [B, T, I] -> ``predictions`` [B, T, O] (logits at every step; the problem's mask scores the
    recall steps). Each step: controller on ``[x_t; r_{t-1}]``; R read heads and one write head address the
    previous memory by content (cosine similarity, key strength), interpolation with the last weighting, circular
    shift and sharpening; reads come before the write (erase, then add); logits from ``[h_t; r_t]``. Heads start
    on address 0, the controller at zero; the memory starts at ``memory_init``. ``num_addresses: -1`` gives the
    memory one address per input step (N = T), so it grows with the test length. ``--visualize`` draws the memory,
    the read and write weightings over time and the gate, shift and content weighting of read head 0 and the
    write head: the learned copy algorithm (write along a diagonal, jump back, read along a diagonal).
    """

    @dataclass
    class Params:
        """Parameters of the Neural Turing Machine."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True)
        controller: Literal["lstm", "gru", "rnn", "feedforward"] = param(
            "rnn", "the controller: lstm, gru, rnn (h = phi(W [u; h_prev] + b)) or feedforward (h = W u + b, "
                   "no state); u = [x_t; r_{t-1}]")
        hidden_size: int = param(100, "size H of the controller's output", min=1, max=MAX_UNITS)
        non_linearity: Literal["sigmoid", "tanh", "relu", "none"] = param(
            "tanh", "phi of the rnn controller (the original configs: sigmoid)")
        num_read_heads: int = param(1, "number R of read heads (there is one write head)", min=1)
        num_addresses: int = param(-1, "number N of memory addresses; -1: N = T, the length of the input sequence",
                                   min=1, also=(-1,))
        num_content_bits: int = param(10, "width C of one memory address", min=1)
        shift_size: int = param(3, "width S of the shift kernel (odd): shifts -(S-1)/2 .. +(S-1)/2", min=1)
        use_content_addressing: bool = param(True, "address by content before the location step "
                                                   "(False: shift and sharpen the last weighting only)")
        memory_init: Literal["constant", "zero", "learned"] = param(
            "constant", "initial memory: every cell memory_init_value, zero, or one learned content vector "
                        "shared by all addresses (starting at memory_init_value)")
        memory_init_value: float = param(0.01, "the initial value of every memory cell (constant, learned)")

    def __init__(self, params: NTM.Params) -> None:
        super().__init__(params)
        self.cell = build_cell(params)
        self.num_addresses = int(params.num_addresses)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        batch_size, steps, _ = x.shape
        num_addresses = steps if self.num_addresses == -1 else self.num_addresses
        state = self.cell.init_state(batch_size, num_addresses, x.device, x.dtype)
        predictions, _, internals = unroll(self.cell, x, state, self.recording)
        self.internals.update(internals)
        return predictions

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index``: memory, read/write weightings, head 0's and the write head's
        gate, shift and content weighting (from a recorded forward)."""
        if "memory" not in self.internals:
            return None
        from miprometheus.models.memory.figures import ntm_frames

        return ntm_frames(self.internals, batch["sequences"][index], predictions[index], index,
                          f"{self.name}, sample {index}")


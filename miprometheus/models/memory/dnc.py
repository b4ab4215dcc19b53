"""Differentiable Neural Computer: a controller with R read heads and one write head on a memory with dynamic
allocation and temporal links.

Graves et al., "Hybrid computing using a neural network with dynamic external memory", Nature 538, 2016
(equations of its Methods section). One step of the cell:

1. controller ``h_t = Ctrl([x_t; r^1_{t-1}; ...; r^R_{t-1}])``; the interface vector ``xi_t = W_xi h_t`` is split
   into read keys and strengths, write key and strength, erase and write vectors, free gates, allocation and write
   gates, and the read modes (a softmax over (backward, content, forward) for each read head);
2. usage ``u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t`` with the retention
   ``psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1})``;
3. allocation ``a_t``: the slots sorted by usage, ``a_t[phi_j] = (1 - u_t[phi_j]) prod_{i<j} u_t[phi_i]``;
4. write weighting ``w^w_t = g^w [g^a a_t + (1 - g^a) C(M_{t-1}, k^w, beta^w)]``, then erase and add;
5. precedence ``p_t`` and the link matrix ``L_t`` (diagonal zero);
6. read weightings ``w^{r,i}_t = pi_b L_t^T w^{r,i}_{t-1} + pi_c C(M_t, k^{r,i}, beta^{r,i}) + pi_f L_t w^{r,i}_{t-1}``,
   read vectors ``r^i_t = M_t^T w^{r,i}_t``;
7. output ``y_t = W_y [h_t; r^1_t; ...; r^R_t] + b_y``.

Where the original MI-Prometheus departs from the paper's Methods this file follows the paper: the usage keeps its
gradients (only ``w^w_{t-1}`` and the sort's permutation are constants, as in DeepMind's code), so the free gates
learn; the read-mode softmax runs per head; the link diagonal is zeroed by multiplying with ``1 - I``; the initial
state is all zeros (no 1e-6 fillers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from miprometheus.errors import ConfigError
from miprometheus.models.memory import addressing
from miprometheus.models.memory.controllers import Controller
from miprometheus.models.memory.ntm import unroll
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model

#: the controllers a DNC may use (``controllers.CONTROLLERS`` without ThalNet's ffgru).
DNC_CONTROLLERS = ("lstm", "gru", "rnn", "feedforward")
#: usage is kept in [ALLOCATION_EPSILON, 1] inside the allocation, so no factor of the product of usages is 0
#: (the guard of DeepMind's DNC code).
ALLOCATION_EPSILON = 1e-6
#: the order of the read modes of a head.
READ_MODES = ("backward", "content", "forward")


class DNCState(NamedTuple):
    """The recurrent state of a DNC between two steps."""

    controller: Any              # the controller's state (a tensor, an (h, c) pair, or None)
    memory: torch.Tensor         # M_{t-1} [B, N, W]
    usage: torch.Tensor          # u_{t-1} [B, N]
    precedence: torch.Tensor     # p_{t-1} [B, N]
    link: torch.Tensor           # L_{t-1} [B, N, N]; L[i, j]: how much slot i was written right after slot j
    write_weights: torch.Tensor  # w^w_{t-1} [B, N]
    read_weights: torch.Tensor   # w^r_{t-1} [B, R, N]
    reads: torch.Tensor          # r_{t-1} [B, R, W]


# --- the DNC's memory equations (Methods), each on whole batches -----------------------------------------------------
def usage_update(usage: torch.Tensor, write_weights: torch.Tensor, free_gates: torch.Tensor,
                 read_weights: torch.Tensor) -> torch.Tensor:
    """``u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) prod_i (1 - f^i w^{r,i}_{t-1})``, ``[B, N]``.

    ``usage``, ``write_weights`` [B, N], ``free_gates`` [B, R], ``read_weights`` [B, R, N]. The gradient is stopped
    on the previous write weighting only (as DeepMind's implementation): the free gates, the read weightings and the
    previous usage keep theirs, so the network learns when to free a slot.
    """
    write_weights = write_weights.detach()
    written = usage + write_weights - usage * write_weights
    retention = torch.prod(1.0 - free_gates.unsqueeze(-1) * read_weights, dim=1)
    return written * retention


def allocation_weighting(usage: torch.Tensor, eps: float = ALLOCATION_EPSILON) -> torch.Tensor:
    """``a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i]`` with ``phi`` the slots by ascending usage, ``[B, N]``.

    Vectorised: sort, exclusive cumulative product, then the sorted allocation is put back in slot order by a
    scatter. The usage is first mapped to ``eps + (1 - eps) u``, as in DeepMind's implementation, so no factor of the
    product is exactly 0 (the gradient of a cumulative product divides by its factors). The permutation carries no
    gradient; the values do. A stable sort gives ties to the lower address, so the result is deterministic.
    """
    usage = eps + (1.0 - eps) * usage
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)
    # Exclusive cumprod: the product of the usages of the slots *before* slot j in the order (1 for the first).
    before = torch.cumprod(torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=-1), dim=-1)
    sorted_allocation = (1.0 - sorted_usage) * before
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)


def precedence_update(precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """``p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t``: where the last write went, ``[B, N]``."""
    return (1.0 - write_weights.sum(dim=-1, keepdim=True)) * precedence + write_weights


def link_update(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """``L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j]`` with ``L_t[i, i] = 0``, ``[B, N, N]``.

    ``w`` is the current write weighting, ``p_{t-1}`` the previous precedence. The diagonal (a slot does not
    follow itself) is zeroed by multiplying with ``1 - I``, with no loop over samples or slots.
    """
    w_i = write_weights.unsqueeze(-1)  # [B, N, 1]
    w_j = write_weights.unsqueeze(-2)  # [B, 1, N]
    link = (1.0 - w_i - w_j) * link + w_i * precedence.unsqueeze(-2)
    num_addresses = link.shape[-1]
    off_diagonal = 1.0 - torch.eye(num_addresses, device=link.device, dtype=link.dtype)
    return link * off_diagonal


def directional_weightings(link: torch.Tensor, read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward ``f^i = L w^{r,i}`` and backward ``b^i = L^T w^{r,i}`` weightings ``[B, R, N]`` of each head.

    ``read_weights`` [B, R, N] are the previous read weightings: forward moves each head to the slots written
    right after the ones it read, backward to those written right before.
    """
    forward = torch.bmm(read_weights, link.transpose(1, 2))  # f[b, r, i] = sum_j L[b, i, j] w[b, r, j]
    backward = torch.bmm(read_weights, link)                  # b[b, r, i] = sum_j L[b, j, i] w[b, r, j]
    return forward, backward


def content_weightings(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """Content lookup ``C(M, k^h, beta^h)`` for several heads at once: ``keys`` [B, K, W], ``strengths`` [B, K, 1].

    The heads are folded into the batch, so one call of :func:`addressing.content_weighting` serves all of them.
    """
    batch_size, heads, width = keys.shape
    num_addresses = memory.shape[1]
    shared = memory.unsqueeze(1).expand(batch_size, heads, num_addresses, width).reshape(-1, num_addresses, width)
    weights = addressing.content_weighting(shared, keys.reshape(-1, width), strengths.reshape(-1, 1))
    return weights.view(batch_size, heads, num_addresses)


class DNCInterface(torch.nn.Module):
    """The interface vector ``xi_t = W_xi h_t``, split and squashed (Methods, "Interface parameters").

    One linear layer for all parameters (its rows are the separate layers of the original stacked); sizes per step:
    read keys ``R x W`` (linear), read strengths ``R`` (oneplus), write key ``W`` (linear), write strength (oneplus),
    erase ``W`` (sigmoid), write vector ``W`` (linear), free gates ``R`` (sigmoid), allocation and write gates
    (sigmoid), read modes ``R x 3`` (softmax over the 3 modes of each head, never across heads).
    """

    def __init__(self, hidden_size: int, num_read_heads: int, word_size: int) -> None:
        super().__init__()
        r, w = num_read_heads, word_size
        self.num_read_heads, self.word_size = r, w
        self.sizes = [r * w, r, w, 1, w, w, r, 1, 1, r * len(READ_MODES)]
        self.layer = torch.nn.Linear(hidden_size, sum(self.sizes))

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """The squashed parameters of every head; see the class docstring for the shapes."""
        batch_size, r, w = h.shape[0], self.num_read_heads, self.word_size
        (read_keys, read_strengths, write_key, write_strength, erase, write_vector, free_gates, allocation_gate,
         write_gate, read_modes) = self.layer(h).split(self.sizes, dim=-1)
        return {
            "read_keys": read_keys.view(batch_size, r, w),
            "read_strengths": addressing.oneplus(read_strengths).view(batch_size, r, 1),
            "write_key": write_key.view(batch_size, 1, w),
            "write_strength": addressing.oneplus(write_strength).view(batch_size, 1, 1),
            "erase": torch.sigmoid(erase),
            "write_vector": write_vector,
            "free_gates": torch.sigmoid(free_gates),
            "allocation_gate": torch.sigmoid(allocation_gate),
            "write_gate": torch.sigmoid(write_gate),
            "read_modes": torch.softmax(read_modes.view(batch_size, r, len(READ_MODES)), dim=-1),
        }


class DNCCell(torch.nn.Module):
    """One DNC step, vectorised over the batch and the read heads: ``(x_t, state) -> (logits y_t, state, step)``."""

    def __init__(self, input_size: int, output_size: int, controller: str = "lstm", hidden_size: int = 64,
                 non_linearity: str = "sigmoid", num_read_heads: int = 1, word_size: int = 10) -> None:
        super().__init__()
        self.num_read_heads, self.word_size = num_read_heads, word_size
        self.controller = Controller(controller, input_size + num_read_heads * word_size, hidden_size, non_linearity)
        self.interface = DNCInterface(hidden_size, num_read_heads, word_size)
        self.output = torch.nn.Linear(hidden_size + num_read_heads * word_size, output_size)

    def init_state(self, batch_size: int, num_addresses: int, device: Any = None,
                   dtype: torch.dtype = torch.float32) -> DNCState:
        """The initial state: zero controller state, memory, usage, precedence, links, weightings and reads."""
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(batch_size, *shape, device=device, dtype=dtype)

        r, n = self.num_read_heads, num_addresses
        return DNCState(self.controller.init_state(batch_size, device, dtype), zeros(n, self.word_size), zeros(n),
                        zeros(n), zeros(n, n), zeros(n), zeros(r, n), zeros(r, self.word_size))

    def forward(self, x: torch.Tensor, state: DNCState) -> tuple[torch.Tensor, DNCState, dict[str, torch.Tensor]]:
        """Logits ``[B, O]`` for the item ``x [B, I]``, the new state, and this step's addressing (for plots)."""
        h, controller = self.controller(torch.cat([x, state.reads.flatten(1)], dim=-1), state.controller)
        p = self.interface(h)

        # Write: free what the heads read (if the free gates say so), allocate, mix with the content lookup.
        usage = usage_update(state.usage, state.write_weights, p["free_gates"], state.read_weights)
        allocation = allocation_weighting(usage)
        write_content = content_weightings(state.memory, p["write_key"], p["write_strength"]).squeeze(1)
        allocation_gate, write_gate = p["allocation_gate"], p["write_gate"]
        write_weights = write_gate * (allocation_gate * allocation + (1.0 - allocation_gate) * write_content)
        memory = addressing.erase_and_add(state.memory, write_weights, p["erase"], p["write_vector"])

        # Temporal links use the new write weighting and the previous precedence.
        link = link_update(state.link, state.precedence, write_weights)
        precedence = precedence_update(state.precedence, write_weights)

        # Read from the memory after the write.
        forward, backward = directional_weightings(link, state.read_weights)
        read_content = content_weightings(memory, p["read_keys"], p["read_strengths"])
        modes = p["read_modes"]  # [B, R, 3]: backward, content, forward
        read_weights = modes[..., 0:1] * backward + modes[..., 1:2] * read_content + modes[..., 2:3] * forward
        reads = torch.bmm(read_weights, memory)  # r^i_t = M_t^T w^{r,i}_t  [B, R, W]

        logits = self.output(torch.cat([h, reads.flatten(1)], dim=-1))
        step = {"write_weights": write_weights, "read_weights": read_weights, "usage": usage,
                "allocation": allocation, "read_modes": modes, "free_gates": p["free_gates"],
                "allocation_gate": allocation_gate.squeeze(-1), "write_gate": write_gate.squeeze(-1)}
        new_state = DNCState(controller, memory, usage, precedence, link, write_weights, read_weights, reads)
        return logits, new_state, step


def build_cell(p: Any) -> DNCCell:
    """A :class:`DNCCell` from the DNC parameters ``p``, after checking the controller (a bad one is a ConfigError;
    the bounds declared on the parameters were checked when the model was made)."""
    if p.controller not in DNC_CONTROLLERS:
        raise ConfigError(f"model DNC: controller must be one of {', '.join(DNC_CONTROLLERS)}, got '{p.controller}'")
    return DNCCell(p.input_item_size, p.output_item_size, p.controller, p.hidden_size, p.non_linearity,
                   p.num_read_heads, p.word_size)


@register_model
class DNC(Model):
    """Differentiable Neural Computer (Graves et al. 2016): a memory with dynamic allocation and temporal links.

    ``sequences`` [B, T, I] -> ``predictions`` [B, T, O] (logits at every step; the problem's mask scores the
    recall steps). Each step: controller on ``[x_t; r_{t-1}]``; one write head writes where the allocation
    weighting points (the least used slot, freed slots first) or where the content lookup points, mixed by the
    allocation gate and scaled by the write gate; the link matrix remembers the order of the writes; R read heads
    each mix a backward step along the links, a content lookup and a forward step (read modes, a softmax per head);
    logits from ``[h_t; r_t]``. Written to the paper, not to the original's bugs: the usage keeps its
    gradients, so the free gates learn. ``num_addresses: -1`` gives one slot per input step (N = T). The state
    starts at zero. ``--visualize`` draws the memory, the read and write weightings, usage, read modes and gates
    over time and the link matrix of the last step.
    """

    @dataclass
    class Params:
        """Parameters of the Differentiable Neural Computer."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True)
        controller: Literal["lstm", "gru", "rnn", "feedforward"] = param(
            "lstm", "the controller: lstm, gru, rnn (phi(W [u; h] + b)) or feedforward (W u + b, no state)")
        hidden_size: int = param(64, "size H of the controller's output", min=1, max=MAX_UNITS)
        non_linearity: Literal["sigmoid", "tanh", "relu", "none"] = param("sigmoid", "phi of the rnn controller")
        num_read_heads: int = param(1, "number R of read heads (there is one write head)", min=1)
        num_addresses: int = param(-1, "number N of memory slots; -1: N = T, the length of the input sequence",
                                   min=1, also=(-1,))
        word_size: int = param(10, "width W of one memory slot", min=1, max=MAX_UNITS)

    def __init__(self, params: DNC.Params) -> None:
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
        predictions, state, internals = unroll(self.cell, x, state, self.recording)
        if self.recording:
            self.internals.update(internals)  # the steps' weightings, gates and memory [B, T, N, W]
            # Only the last step's links: the links over time would take B T N^2 floats (N = T = 202 at length 100).
            self.internals["link"] = state.link.detach()  # [B, N, N]
        return predictions

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index`` (from a recorded forward): memory and link matrix above; inputs,
        write and read weightings, usage, read modes, gates and predictions over time."""
        if "memory" not in self.internals:
            return None
        from miprometheus.models.memory.figures import dnc_frames

        return dnc_frames(self.internals, batch["sequences"][index], predictions[index], index,
                          f"{self.name}, sample {index}")

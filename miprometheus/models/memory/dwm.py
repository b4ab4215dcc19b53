"""DWM: Differentiable Working Memory, one head that reads and writes, with a bookmark and attention jumps.

Jayram, Bouhadjar, McAvoy, Kornuta, Asseman, Rocki, Ozcan, "Learning to Remember, Forget and Ignore using Attention
Control in Memory", arXiv:1809.11087, 2018, as MI-Prometheus built it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from miprometheus.errors import ConfigError
from miprometheus.models.memory.addressing import content_weighting, location_addressing, one_hot_address, oneplus
from miprometheus.models.memory.controllers import CONTROLLERS, NON_LINEARITIES, Controller
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model

#: the value every memory cell starts at (the original MI-Prometheus's M_0 = 0.01, not 0).
MEMORY_INIT = 0.01
#: the jump mixture's three targets, in the order of its logits.
JUMPS = ("stay", "bookmark", "address 0")


@register_model
class DWM(Model):
    """Differentiable Working Memory (Jayram et al. 2018): one read-write head with a bookmark and attention jumps.

    Paper: "Learning to Remember, Forget and Ignore using Attention Control in Memory", arXiv:1809.11087.

    An NTM-like memory network whose heads each read and write at one attention, plus, per head, a bookmark (an
    attention kept aside) and a jump mixture: at every step the attention stays, jumps to the bookmark or jumps to
    address 0, then shifts and sharpens. Per step ``t`` (memory ``M`` [B, N, C], attention ``w``, bookmark ``w^b``):

    1. read with the previous attention, ``r_t = w_{t-1}^T M_{t-1}``; ``z_t = [x_t; r_t]``;
    2. controller (a sigmoid RNN by default): ``h_t = ctrl(z_t, h_{t-1})``; the output ``y_t = W_y [z_t; h_{t-1}]``
       and the interface ``P_t = W_P [z_t; h_{t-1}]`` use ``h_{t-1}``, not ``h_t``. This one-step lag is the
       model's definition (the new hidden state only acts at the next step), not a bug: keep it;
    3. ``P_t`` per head: shift ``s = softmax(softplus(.))`` (S), bookmark gate ``j = sigmoid`` (1), jump
       ``pi = softmax`` (3), ``gamma = oneplus`` (1), erase ``e = sigmoid`` (C), add ``a`` (C, linear, unbounded)
       and, with content addressing, key ``tanh`` (C), strength ``softplus`` (1), gate ``sigmoid`` (1);
    4. write with the previous attention: ``M_t = M_{t-1} * prod_h(1 - w_{t-1} e^T) + sum_h w_{t-1} a^T``;
    5. bookmark ``w^b_t = (1 - j) w_{t-1} + j w^b_{t-1}`` (j = 0 bookmarks the current attention, j = 1 keeps the
       old bookmark); jump ``w' = pi_0 w_{t-1} + pi_1 w^b_t + pi_2 delta_0``;
    6. with content addressing ``w' <- g softmax(beta cos(k, M_t)) + (1 - g) w'``; then shift and sharpen:
       ``w_t = normalize((circconv(w', s) + 1e-12) ** gamma)``.

    Initial state: ``M_0 = 0.01``, ``w_0 = w^b_0 = delta_0``, ``h_0 = 0``. ``num_addresses: -1`` gives
    ``N = max(T, S)``, so the memory grows with the test length. ``sequences`` [B, T, I] -> logits [B, T, O].
    The plot shows the memory at each step, the head and bookmark attentions and the jump mixture over time.
    """

    @dataclass
    class Params:
        """Parameters of the DWM (defaults: configs/dwm_baselines/dwm/default_dwm.yaml of the original)."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True, min=1)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True, min=1)
        hidden_size: int = param(5, "controller units H", min=1, max=MAX_UNITS)
        controller: str = param("rnn", "controller kind: rnn (the paper's sigmoid RNN), lstm, gru, feedforward, "
                                       "ffgru")
        non_linearity: str = param("sigmoid", "non-linearity of the rnn controller: sigmoid, tanh, relu, none")
        num_content_bits: int = param(10, "width C of one memory slot", min=1)
        num_addresses: int = param(-1, "number of memory slots N; -1: N = max(T, shift_size), T of each batch")
        num_heads: int = param(1, "number of heads (each reads and writes at one attention, with its bookmark)",
                               min=1)
        shift_size: int = param(3, "width S of the shift kernel (odd; 3 = shifts -1, 0, +1)", min=1)
        use_content_addressing: bool = param(False, "mix content addressing on the new memory into the attention")

    def __init__(self, params: DWM.Params) -> None:
        super().__init__(params)
        self._check(params)
        self.input_item_size = int(params.input_item_size)
        self.output_item_size = int(params.output_item_size)
        self.hidden_size = int(params.hidden_size)
        self.num_content_bits = int(params.num_content_bits)
        self.num_addresses = int(params.num_addresses)
        self.num_heads = int(params.num_heads)
        self.shift_size = int(params.shift_size)
        self.use_content_addressing = bool(params.use_content_addressing)
        c, s = self.num_content_bits, self.shift_size
        #: the widths of one head's interface slices, in the order the original slices them.
        self.slices = {"shift": s, "bookmark_gate": 1, "jump": len(JUMPS), "gamma": 1, "erase": c, "add": c}
        if self.use_content_addressing:
            self.slices.update({"key": c, "strength": 1, "gate": 1})
        z_size = self.input_item_size + self.num_heads * c  # z_t = [x_t; r_t]
        self.controller = Controller(params.controller, z_size, self.hidden_size, params.non_linearity)
        self.output = torch.nn.Linear(z_size + self.hidden_size, self.output_item_size)
        self.interface = torch.nn.Linear(z_size + self.hidden_size, self.num_heads * sum(self.slices.values()))
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    @staticmethod
    def _check(p: DWM.Params) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"model DWM: {message}")

        if p.shift_size % 2 == 0:
            fail(f"shift_size must be odd (3 = shifts -1, 0, +1), got {p.shift_size}")
        if p.num_addresses != -1 and p.num_addresses < p.shift_size:
            fail(f"num_addresses must be -1 (N = T) or at least shift_size ({p.shift_size}): the circular shift "
                 f"needs N >= S, got {p.num_addresses}")
        if p.controller not in CONTROLLERS:
            fail(f"controller must be one of {', '.join(CONTROLLERS)}, got '{p.controller}'")
        if p.non_linearity not in NON_LINEARITIES:
            fail(f"non_linearity must be one of {', '.join(NON_LINEARITIES)}, got '{p.non_linearity}'")

    def memory_size(self, steps: int) -> int:
        """The number of slots N for a batch of ``steps`` items."""
        return self.num_addresses if self.num_addresses > 0 else max(steps, self.shift_size)

    def interface_parameters(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Slice and squash the interface vector ``[B, heads * P]`` into per-head parameters ``[B, heads, .]``."""
        raw = raw.view(raw.shape[0], self.num_heads, -1)
        parts = dict(zip(self.slices, torch.split(raw, list(self.slices.values()), dim=-1)))
        squashed = {
            "shift": torch.softmax(F.softplus(parts["shift"]), dim=-1),
            "bookmark_gate": torch.sigmoid(parts["bookmark_gate"]),
            "jump": torch.softmax(parts["jump"], dim=-1),
            "gamma": oneplus(parts["gamma"]),
            "erase": torch.sigmoid(parts["erase"]),
            "add": parts["add"],  # linear, as in the original: the memory is unbounded
        }
        if self.use_content_addressing:
            squashed.update({"key": torch.tanh(parts["key"]), "strength": F.softplus(parts["strength"]),
                             "gate": torch.sigmoid(parts["gate"])})
        return squashed

    @staticmethod
    def write(memory: torch.Tensor, attention: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """``M * prod_h(1 - w_h e_h^T) + sum_h w_h a_h^T`` for ``attention [B, heads, N]``, ``erase``/``add``
        ``[B, heads, C]``: the heads' erasures compose by product, their additions by sum."""
        w = attention.unsqueeze(-1)  # [B, heads, N, 1]
        keep = torch.prod(1.0 - w * erase.unsqueeze(2), dim=1)  # [B, N, C]
        return memory * keep + (w * add.unsqueeze(2)).sum(dim=1)

    def move_attention(self, memory: torch.Tensor, attention: torch.Tensor, bookmark: torch.Tensor,
                       p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 5-6: the new bookmark and the new attention ``[B, heads, N]`` from the previous attention,
        the previous bookmark, the new memory ``[B, N, C]`` and the interface parameters."""
        batch, heads, n = attention.shape
        gate = p["bookmark_gate"]
        bookmark = (1.0 - gate) * attention + gate * bookmark
        delta0 = one_hot_address(batch, n, attention.device, attention.dtype).unsqueeze(1)
        jump = p["jump"].unsqueeze(-1)  # [B, heads, 3, 1]
        moved = jump[:, :, 0] * attention + jump[:, :, 1] * bookmark + jump[:, :, 2] * delta0
        if self.use_content_addressing:
            repeated = memory.repeat_interleave(heads, dim=0)  # one memory row per (sample, head)
            content = content_weighting(repeated, p["key"].reshape(batch * heads, -1),
                                        p["strength"].reshape(batch * heads, 1)).view(batch, heads, n)
            moved = p["gate"] * content + (1.0 - p["gate"]) * moved
        new = location_addressing(moved.reshape(batch * heads, n), p["shift"].reshape(batch * heads, -1),
                                  p["gamma"].reshape(batch * heads, 1))
        return new.view(batch, heads, n), bookmark

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        if x.dim() == 4:  # [B, 1, T, I], as the original accepted
            x = x[:, 0]
        b, steps, _ = x.shape
        n = self.memory_size(steps)
        memory = torch.full((b, n, self.num_content_bits), MEMORY_INIT, device=x.device, dtype=x.dtype)
        attention = one_hot_address(b, n, x.device, x.dtype).unsqueeze(1).repeat(1, self.num_heads, 1)
        bookmark = attention.clone()
        state = self.controller.init_state(b, x.device, x.dtype)
        h_previous = torch.zeros(b, self.hidden_size, device=x.device, dtype=x.dtype)
        outputs, record = [], {"memory": [], "attention": [], "bookmark": [], "jump": [], "bookmark_gate": []}
        for t in range(steps):
            reads = torch.bmm(attention, memory)  # [B, heads, C], with the previous attention
            z = torch.cat([x[:, t], reads.flatten(1)], dim=-1)
            z_h = torch.cat([z, h_previous], dim=-1)
            outputs.append(self.output(z_h))  # h_{t-1}, not h_t: the model's one-step lag
            p = self.interface_parameters(self.interface(z_h))
            h_previous, state = self.controller(z, state)
            used = attention
            memory = self.write(memory, attention, p["erase"], p["add"])
            attention, bookmark = self.move_attention(memory, attention, bookmark, p)
            if self.recording:
                record["memory"].append(memory.detach())
                record["attention"].append(used.detach())
                record["bookmark"].append(bookmark.detach())
                record["jump"].append(p["jump"].detach())
                record["bookmark_gate"].append(p["bookmark_gate"].detach())
        if self.recording:
            # memory [B, T, N, C] after step t's write; attention (read and written at step t), bookmark
            # [B, T, heads, N]; jump [B, T, heads, 3]; bookmark_gate [B, T, heads, 1].
            self.internals.update({key: torch.stack(values, dim=1) for key, values in record.items()})
        return torch.stack(outputs, dim=1)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index``: the memory at each step, the head attention, the bookmark
        attention and the jump mixture of every head (from a recorded forward)."""
        if "memory" not in self.internals:
            return None
        from miprometheus.models.memory.figures import dwm_frames

        return dwm_frames(self.internals, index, f"{self.name}, sample {index}", JUMPS)

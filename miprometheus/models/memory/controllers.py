"""The controllers of the memory-augmented networks, chosen by name in a config (the original MI-Prometheus's).

A controller maps the input ``u_t [B, I]`` and its state to the output ``h_t [B, H]``; every controller starts from
a zero state. ``init_state(batch_size, device, dtype)`` gives that state, ``forward(u, state) -> (h, state)``.
"""

from __future__ import annotations

from typing import Any

import torch

#: the names a config may give in ``controller``.
CONTROLLERS = ("feedforward", "rnn", "lstm", "gru", "ffgru")
NON_LINEARITIES = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "none": lambda x: x}


class Controller(torch.nn.Module):
    """One step of a controller; ``kind`` is one of :data:`CONTROLLERS`.

    - ``feedforward``: ``h = W u + b`` (no state);
    - ``rnn``: ``h = phi(W [u; h_prev] + b)`` with ``phi`` = ``non_linearity`` (sigmoid in the original configs);
    - ``lstm`` / ``gru``: one LSTMCell / GRUCell;
    - ``ffgru``: a linear layer to ``ff_size`` features, then a GRUCell (ThalNet's modules).
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, non_linearity: str = "sigmoid",
                 ff_size: int | None = None) -> None:
        super().__init__()
        if kind not in CONTROLLERS:
            raise ValueError(f"unknown controller '{kind}'; known: {', '.join(CONTROLLERS)}")
        if non_linearity not in NON_LINEARITIES:
            raise ValueError(f"unknown non_linearity '{non_linearity}'; known: {', '.join(NON_LINEARITIES)}")
        self.kind, self.hidden_size = kind, int(hidden_size)
        self.phi = NON_LINEARITIES[non_linearity]
        if kind == "feedforward":
            self.cell = torch.nn.Linear(input_size, hidden_size)
        elif kind == "rnn":
            self.cell = torch.nn.Linear(input_size + hidden_size, hidden_size)
        elif kind == "lstm":
            self.cell = torch.nn.LSTMCell(input_size, hidden_size)
        elif kind == "gru":
            self.cell = torch.nn.GRUCell(input_size, hidden_size)
        else:
            ff_size = int(ff_size or hidden_size)
            self.feedforward = torch.nn.Linear(input_size, ff_size)
            self.cell = torch.nn.GRUCell(ff_size, hidden_size)

    def init_state(self, batch_size: int, device: Any = None, dtype: torch.dtype = torch.float32) -> Any:
        """The zero initial state (``None`` for the stateless feed-forward controller)."""
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        if self.kind == "feedforward":
            return None
        if self.kind == "lstm":
            return (zeros, zeros.clone())
        return zeros

    def forward(self, u: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """``(h_t, new state)`` for the input ``u [B, I]``."""
        if self.kind == "feedforward":
            return self.cell(u), None
        if self.kind == "rnn":
            h = self.phi(self.cell(torch.cat([u, state], dim=-1)))
            return h, h
        if self.kind == "lstm":
            h, c = self.cell(u, state)
            return h, (h, c)
        if self.kind == "ffgru":
            u = self.feedforward(u)
        h = self.cell(u, state)
        return h, h

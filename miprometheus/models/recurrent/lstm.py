"""LSTM: a stacked LSTM baseline that maps a sequence to one output per input item (Hochreiter, Schmidhuber 1997)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


@register_model
class LSTM(Model):
    """Stacked LSTM, sequence to sequence: logits for every input step (h0 = c0 = 0, not learned).

    ``sequences`` [B, T, I] -> ``predictions`` [B, T, O]. The model emits an output at every
    step, including the store phase; the problem's mask decides which outputs are scored.
    """

    @dataclass
    class Params:
        """Parameters of the LSTM baseline."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True)
        hidden_size: int = param(256, "number of units H in each LSTM layer", min=1, max=MAX_UNITS)
        num_layers: int = param(1, "number of stacked LSTM layers", min=1, max=1024)
        dropout: float = param(0.0, "dropout probability between stacked layers (off in eval mode)", min=0, max=1)

    def __init__(self, params: LSTM.Params) -> None:
        super().__init__(params)
        self.input_item_size = int(params.input_item_size)
        self.output_item_size = int(params.output_item_size)
        # torch.nn.LSTM computes the same recurrence as a stack of LSTMCells unrolled step by step,
        # but runs the time loop in fused kernels, which is much faster.
        self.lstm = torch.nn.LSTM(
            input_size=self.input_item_size,
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
            # torch only applies dropout between layers; it warns when there is a single layer.
            dropout=params.dropout if params.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output = torch.nn.Linear(params.hidden_size, self.output_item_size)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        # No initial state given: torch.nn.LSTM starts from h0 = c0 = 0.
        hidden, _ = self.lstm(batch["sequences"])
        if self.recording:
            self.internals["hidden"] = hidden.detach()  # [B, T, H], the top layer
        return self.output(hidden)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of the top layer's hidden state of sample ``index`` (from a recorded forward)."""
        if "hidden" not in self.internals:
            return None
        from miprometheus.plotting import hidden_state_frames

        return hidden_state_frames(self.internals["hidden"][index], f"{self.name}, sample {index}")

"""EncoderSolverLSTM: an LSTM encoder and an LSTM solver that share one state and one output layer
(a baseline of Jayram et al. 2018, arXiv:1809.10847)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.errors import ConfigError
from miprometheus.models.memory.maes import phases, select
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


@register_model
class EncoderSolverLSTM(Model):
    """Encoder-Solver LSTM, the memory-less baseline of MAES (Jayram et al. 2018, arXiv:1809.10847).

    Two ``LSTMCell``s of H units, the encoder and the solver, pass one state ``(h, c)`` on through the mode
    switches unchanged and share the output layer ``y_t = W_o h_t + b_o``. Each sample starts in Encode mode (also
    when its first item has neither control bit set: the original crashed there), switches to Solve mode at an item
    with the recall bit and back to Encode at an item with the store bit; each sample decides for itself, not by
    batch element 0 as the original. ``(h_0, c_0) = 0``. ``sequences`` [B, T, I] -> logits [B, T, O].
    """

    @dataclass
    class Params:
        """Parameters of the Encoder-Solver LSTM (configs/maes_baselines/es_lstm/default_es_lstm.yaml: H = 256)."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True, min=1)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True, min=1)
        store_bit: int = param(doc="input channel of the store marker (switches to Encode mode)", from_problem=True)
        recall_bit: int = param(doc="input channel of the recall marker (switches to Solve mode)", from_problem=True)
        hidden_size: int = param(256, "units H of each LSTMCell", min=1, max=MAX_UNITS)

    def __init__(self, params: EncoderSolverLSTM.Params) -> None:
        super().__init__(params)
        i, o, h = int(params.input_item_size), int(params.output_item_size), int(params.hidden_size)
        for name in ("store_bit", "recall_bit"):
            if not 0 <= int(getattr(params, name)) < i:
                raise ConfigError(f"model EncoderSolverLSTM: {name} must be an input channel (0..{i - 1}), "
                                  f"got {getattr(params, name)}")
        if params.store_bit == params.recall_bit:
            raise ConfigError("model EncoderSolverLSTM: store_bit and recall_bit must be different channels, "
                              f"both are {params.store_bit}")
        self.store_bit, self.recall_bit, self.hidden_size = int(params.store_bit), int(params.recall_bit), h
        self.encoder = torch.nn.LSTMCell(i, h)
        self.solver = torch.nn.LSTMCell(i, h)
        self.output = torch.nn.Linear(h, o)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        b, steps, _ = x.shape
        # [B, T] per sample, and which cells run at each step (one device-to-host copy)
        solving, _, encoding_any, solving_any, _ = phases(x, self.store_bit, self.recall_bit, switch_back=True)
        state = (x.new_zeros(b, self.hidden_size), x.new_zeros(b, self.hidden_size))
        hidden = []
        for t in range(steps):
            encoded = self.encoder(x[:, t], state) if encoding_any[t] else None
            solved = self.solver(x[:, t], state) if solving_any[t] else None
            if encoded is None or solved is None:
                state = solved if encoded is None else encoded
            else:
                state = select(solving[:, t], solved, encoded)
            hidden.append(state[0])
        hidden = torch.stack(hidden, dim=1)  # [B, T, H]
        if self.recording:
            self.internals.update({"hidden": hidden.detach(), "solving": solving})
        return self.output(hidden)  # the shared output layer, for both modes

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index``: the mode and the hidden state (from a recorded forward)."""
        if "hidden" not in self.internals:
            return None
        from miprometheus.plotting import Panel, sequence_frames, to_numpy

        hidden = to_numpy(self.internals["hidden"][index]).T  # [H, T], tanh-bounded
        return sequence_frames([Panel("mode (1 = solve)", to_numpy(self.internals["solving"][index]).reshape(1, -1),
                                      cmap="Greys"),
                                Panel(f"hidden state ({hidden.shape[0]} units)", hidden, -1.0, 1.0, "RdBu_r", "unit")],
                               f"{self.name}, sample {index}")

"""ThalNet: recurrent modules that communicate only through a routing centre (Hafner et al. 2017).

Hafner, Irpan, Davidson, Heess, "Learning Hierarchical Information Flow with Recurrent Neural Modules", NIPS 2017
(arXiv:1706.05744). ``K`` modules; the centre ``Phi_t = [phi^1_t; ...; phi^K_t]`` concatenates their features. At
step ``t`` every module, in parallel, reads a context from the previous centre and updates its state:

    c^i_t   = R^i(Phi_{t-1})                          reading: weight-normalised (or plain) linear, size kappa
    u^i_t   = [x_t; c^1_t] for the input module i = 1, else c^i_t
    phi^i_t = GRUCell^i(W^i_f u^i_t + b^i_f, phi^i_{t-1})   an FF-GRU module (controllers.py, "ffgru")
    y_t     = W_y phi^K_t + b_y                       a linear read-out of the last module

A module's features are its GRU state (size ``m``). As the modules read ``Phi_{t-1}``, the input ``x_t`` reaches the
read-out at step ``t`` only with a single module; with several, one step later at the earliest (through the centre).

Departures from the original MI-Prometheus, as the paper: the logits come from a linear read-out, so they are not
bounded to the GRU's (-1, 1); the initial centre is zero or learned, never redrawn at random at each call, so
evaluation is deterministic.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from miprometheus.models.memory.controllers import Controller
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


@register_model
class ThalNet(Model):
    """ThalNet (Hafner et al., NIPS 2017): recurrent FF-GRU modules that share features through a routing centre.

    ``sequences`` [B, T, I] -> ``predictions`` [B, T, O]: the read-out of every step (a seq-to-seq model like the
    LSTM; a classifier over a sequence takes the last step's). Each step, every module reads a context from the
    previous centre (the concatenation of all modules' features) through its own weight-normalised linear reading;
    only the first module also sees the input item; a linear read-out of the last module's features gives the
    logits. Unlike the original, the logits are not bounded (they are not GRU units) and the initial centre is
    zero or learned, so evaluation is deterministic. ``--visualize`` draws every module's features (its state) and
    the contexts the modules read, over time.
    """

    @dataclass
    class Params:
        """Parameters of ThalNet."""

        input_item_size: int = param(doc="size I of one input item", from_problem=True)
        output_item_size: int = param(doc="size O of one output item (logits)", from_problem=True)
        num_modules: int = param(4, "number K of modules; the first reads the input, the last gives the read-out",
                                 min=1)
        center_size_per_module: int = param(32, "features m each module sends to the centre (its GRU state size)",
                                            min=1, max=MAX_UNITS)
        context_size: int = param(32, "size kappa of the context each module reads from the centre",
                                  min=1, max=MAX_UNITS)
        reading: Literal["weight_normalized", "linear"] = param(
            "weight_normalized", "each module's reading of the centre: weight-normalised linear (the paper's robust "
                                 "default, w = g v / |v| per row) or plain linear")
        initial_center: Literal["zero", "learned"] = param(
            "zero", "the centre (every module's features) before the first step: zero, or learned (starting at 0)")

    def __init__(self, params: ThalNet.Params) -> None:
        super().__init__(params)
        k, m, kappa = params.num_modules, params.center_size_per_module, params.context_size
        self.num_modules, self.center_size_per_module, self.context_size = k, m, kappa
        # One layer holds every module's reading (its rows are the K readings stacked); weight normalisation with
        # dim=0 normalises each row on its own, so this is K weight-normalised layers computed in one product.
        self.reading = torch.nn.Linear(k * m, k * kappa)
        self.weight_normalized = params.reading == "weight_normalized"
        if self.weight_normalized:
            weight_norm(self.reading, name="weight", dim=0)
        self.cells = torch.nn.ModuleList(
            Controller("ffgru", (params.input_item_size if i == 0 else 0) + kappa, m, ff_size=m) for i in range(k))
        self.readout = torch.nn.Linear(m, params.output_item_size)
        self.initial_features = (torch.nn.Parameter(torch.zeros(k, m)) if params.initial_center == "learned"
                                 else None)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    def initial_state(self, batch_size: int, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Every module's features before the first step, ``[B, K, m]``: zero or the learned initial centre."""
        if self.initial_features is None:
            return torch.zeros(batch_size, self.num_modules, self.center_size_per_module, device=device, dtype=dtype)
        return self.initial_features.to(dtype).unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O], the read-out at every step, for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        batch_size, steps, _ = x.shape
        features = list(self.initial_state(batch_size, x.device, x.dtype).unbind(1))  # K x [B, m]
        outputs, centres, contexts = [], [], []
        # With weight normalisation, compute w = g v / |v| once per forward instead of at every step.
        with parametrize.cached() if self.weight_normalized else contextlib.nullcontext():
            for t in range(steps):
                # Every module reads the previous centre: they all update in parallel.
                context = self.reading(torch.cat(features, dim=-1)).view(batch_size, self.num_modules, -1)
                inputs = [torch.cat([x[:, t], context[:, 0]], dim=-1), *context[:, 1:].unbind(1)]
                features = [module(u, state)[0] for module, u, state in zip(self.cells, inputs, features)]
                outputs.append(self.readout(features[-1]))
                if self.recording:
                    centres.append(torch.stack(features, dim=1))
                    contexts.append(context)
        if self.recording:
            self.internals["centre"] = torch.stack(centres, dim=1).detach()     # [B, T, K, m]
            self.internals["context"] = torch.stack(contexts, dim=1).detach()   # [B, T, K, kappa]
        return torch.stack(outputs, dim=1)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index`` (from a recorded forward): the inputs, each module's features
        (its state, what it sends to the centre), the contexts the modules read, and the predictions."""
        if "centre" not in self.internals:
            return None
        from miprometheus.plotting import Panel, sequence_frames, to_numpy

        centre = to_numpy(self.internals["centre"][index])    # [T, K, m]
        context = to_numpy(self.internals["context"][index])  # [T, K, kappa]
        panels = [Panel("inputs", to_numpy(batch["sequences"][index]).T, ylabel="channel")]
        last = self.num_modules - 1
        for i in range(self.num_modules):
            role = " (reads the input)" if i == 0 else ""
            role += " (read out)" if i == last else ""
            panels.append(Panel(f"module {i}{role}: features phi^{i} = its state", centre[:, i].T, -1.0, 1.0,
                                "RdBu_r", "unit"))
        bound = max(1e-6, float(np.abs(context).max(initial=0.0)))
        panels.append(Panel(f"contexts read from the centre (modules 0..{last}, {self.context_size} rows each)",
                            context.reshape(context.shape[0], -1).T, -bound, bound, "RdBu_r", "row"))
        probabilities = to_numpy(torch.sigmoid(predictions[index].detach().float())).T
        panels.append(Panel("predictions (sigmoid of the logits)", probabilities, ylabel="bit"))
        return sequence_frames(panels, f"{self.name}, sample {index}", width=9.0)

"""EncoderSolverNTM: one NTM cell encodes the store phase, a second one solves the recall phase.

The baseline of Jayram et al., "Using Multi-task and Transfer Learning to Solve Working Memory Tasks"
(arXiv:1809.10847, 2018), next to their MAES. Two full NTM cells (:class:`~miprometheus.models.memory.ntm.NTMCell`)
with the same hyper-parameters share one memory: the encoder runs until the recall cue, then the solver takes over
(the mode switch of :func:`~miprometheus.models.memory.maes.phases`) with the encoder's whole state, or with a
fresh state over the encoder's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.models.memory.maes import phases, select
from miprometheus.models.memory.ntm import NTM, NTMState, build_cell, stack_steps
from miprometheus.models.model import Model, sequence_definitions
from miprometheus.params import param
from miprometheus.registry import register_model


def select_state(mask: torch.Tensor, new: NTMState, old: NTMState) -> NTMState:
    """Per sample, ``new`` where ``mask [B]`` is True, else ``old``."""
    return NTMState(*(select(mask, n, o) for n, o in zip(new, old)))


@register_model
class EncoderSolverNTM(Model):
    """Encoder-solver NTM (Jayram et al. 2018, the MAES paper's baseline): two NTM cells, one per phase.

    ``sequences`` [B, T, I] -> ``predictions`` [B, T, O]. The encoder NTM processes each sample until its first
    step with the recall bit on and the store bit off (the recall cue); from that step on the solver NTM does, and
    never hands back. With ``pass_cell_state`` the solver continues from the encoder's whole state (controller,
    memory, head weightings, reads), else from a fresh state (zero controller, heads on address 0) over the
    encoder's memory. Both cells have the NTM's parameters (see ``mip list models NTM``); the original's config
    turned content addressing off (``use_content_addressing: false``). The switch is decided per sample (the
    original used batch element 0 for the whole batch); when every sample of a batch is in the same phase, as with
    the generated tasks, only one cell runs. An item with both the store and the recall bit is bad data.
    """

    @dataclass
    class Params(NTM.Params):
        """Parameters of the encoder-solver NTM: those of the NTM (both cells), the phase bits, the hand-over."""

        store_bit: int = param(0, "input channel of the store marker", from_problem=True)
        recall_bit: int = param(1, "input channel of the recall marker: the solver starts at its first step",
                                from_problem=True)
        pass_cell_state: bool = param(True, "the solver starts from the encoder's whole state "
                                            "(False: a fresh state over the encoder's memory)")

    def __init__(self, params: EncoderSolverNTM.Params) -> None:
        super().__init__(params)
        self.encoder = build_cell(params)
        self.solver = build_cell(params)
        self.num_addresses = int(params.num_addresses)
        self.store_bit, self.recall_bit = int(params.store_bit), int(params.recall_bit)
        self.pass_cell_state = bool(params.pass_cell_state)
        self.input_definitions, self.output_definitions = sequence_definitions(params)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits [B, T, O] for the input items ``batch["sequences"]`` [B, T, I]."""
        x = batch["sequences"]
        batch_size, steps, _ = x.shape
        num_addresses = steps if self.num_addresses == -1 else self.num_addresses
        # [B, T] per sample, and which cells run at each step (one device-to-host copy)
        solving, switching, encoding_any, solving_any, switching_any = phases(x, self.store_bit, self.recall_bit)
        state = self.encoder.init_state(batch_size, num_addresses, x.device, x.dtype)
        outputs, recorded, memories = [], [], []
        for t in range(steps):
            if switching_any[t] and not self.pass_cell_state:
                state = select_state(switching[:, t], self.solver.state_over(state.memory), state)
            if encoding_any[t] and solving_any[t]:  # samples in different phases: each keeps its own cell's step
                now = solving[:, t]
                encoded_logits, encoded_state, encoded_step = self.encoder(x[:, t], state)
                logits, state, step = self.solver(x[:, t], state)
                logits = select(now, logits, encoded_logits)
                state = select_state(now, state, encoded_state)
                step = {key: select(now, value, encoded_step[key]) for key, value in step.items()}
            else:
                logits, state, step = (self.solver if solving_any[t] else self.encoder)(x[:, t], state)
            outputs.append(logits)
            if self.recording:
                recorded.append(step)
                memories.append(state.memory)
        if self.recording:
            self.internals.update(stack_steps(recorded, memories))
            self.internals["solving"] = solving.detach().float()  # [B, T]
        return torch.stack(outputs, dim=1)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames over time of sample ``index``: the NTM figure (memory, weightings, gates, shifts, content
        weightings; one state passes from the encoder to the solver) with the phase (0 encoder, 1 solver)."""
        if "memory" not in self.internals:
            return None
        from miprometheus.models.memory.figures import ntm_frames
        from miprometheus.plotting import Panel, to_numpy

        phase = Panel("phase (0 = encoder, 1 = solver)", to_numpy(self.internals["solving"][index])[None, :],
                      cmap="Greys")
        return ntm_frames(self.internals, batch["sequences"][index], predictions[index], index,
                          f"{self.name}, sample {index}", extra_panels=(phase,))


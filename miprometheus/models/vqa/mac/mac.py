"""MAC: the Memory, Attention and Composition network (Hudson, Manning 2018).

Hudson and Manning, "Compositional Attention Networks for Machine Reasoning", ICLR 2018 (arXiv:1803.03067), as
MI-Prometheus built it (the structure of the PyTorch port rosinality/mac-network-pytorch, with the projected
knowledge base ``K'``). A recurrent cell runs ``p`` reasoning steps; step i, from control ``c_{i-1}`` and memory
``m_{i-1}`` (d-vectors):

    control   cq_i = W [c_{i-1}; q_i] + b        ca_{i,s} = W (cq_i * cw_s) + b
              cv_i = softmax_s(ca_i) over the real words     c_i = sum_s cv_{i,s} cw_s
    read      I_{i,hw} = (W_m m_{i-1} + b_m) * K'_hw          I'_{i,hw} = W [I_{i,hw}; K_hw] + b
              ra_{i,hw} = W (c_i * I'_{i,hw}) + b             rv_i = softmax_hw(ra_i)    r_i = sum_hw rv_{i,hw} K_hw
    write     m_i = W [r_i; m_{i-1}] + b
              (self_attention) sa_ij = softmax_{j<i}(W (c_i * c_j) + b), m_i = W_s sum_j sa_ij m_j + W_p m_i + b
              (memory_gate)    g_i = sigmoid(W c_i + b),     m_i = g_i m_{i-1} + (1 - g_i) m_i

``c_0`` and ``m_0`` are learned (zero at the start). Variational dropout (training only): one mask for control and
one for memory are drawn per forward pass and multiply ``c_0``, ``m_0`` and every ``c_i``, ``m_i``. The input
and output units are in :mod:`.units`. Departure from the original MI-Prometheus: the control attention is masked,
so padded word positions get exactly zero attention and extra padding does not change the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from miprometheus.data import ANY, DataDefinition
from miprometheus.models.model import Model
from miprometheus.models.vqa.mac.units import (
    EncodedInputs,
    InputUnit,
    MACBaseParams,
    OutputUnit,
    check_params,
    input_definitions,
    masked_softmax,
    variational_mask,
    xavier_linear,
)
from miprometheus.params import param
from miprometheus.registry import register_model


class MACCell(nn.Module):
    """MAC's control, read and write units (the module doc's equations); d-vectors in, d-vectors out."""

    def __init__(self, dim: int, self_attention: bool = False, memory_gate: bool = False) -> None:
        super().__init__()
        d = dim
        self.control_question = xavier_linear(2 * d, d)  # W [c_{i-1}; q_i]
        self.control_attention = xavier_linear(d, 1)
        self.read_memory = xavier_linear(d, d)  # W_m
        self.read_combine = xavier_linear(2 * d, d)  # W [I; K]
        self.read_attention = xavier_linear(d, 1)
        self.write_combine = xavier_linear(2 * d, d)  # W [r_i; m_{i-1}]
        self.self_attention: nn.Linear | None = None
        if self_attention:
            self.self_attention = xavier_linear(d, 1)
            self.write_attended = xavier_linear(d, d)  # W_s
            self.write_new = xavier_linear(d, d)  # W_p
        self.memory_gate = xavier_linear(d, 1) if memory_gate else None

    def control(self, inputs: EncodedInputs, step: int, control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c_i`` [B, d] and the attention over the words ``cv_i`` [B, S] from ``c_{i-1}`` and ``q_i``."""
        cq = self.control_question(torch.cat([control, inputs.step_questions[step]], dim=1))  # [B, d]
        scores = self.control_attention(cq.unsqueeze(1) * inputs.words).squeeze(2)  # [B, S]
        attention = masked_softmax(scores, inputs.word_mask)
        return torch.bmm(attention.unsqueeze(1), inputs.words).squeeze(1), attention

    def read(self, inputs: EncodedInputs, control: torch.Tensor, memory: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``r_i`` [B, d] and the attention over the knowledge base ``rv_i`` [B, HW] from ``c_i`` and ``m_{i-1}``."""
        interaction = self.read_memory(memory).unsqueeze(1) * inputs.projected_knowledge  # I [B, HW, d]
        combined = self.read_combine(torch.cat([interaction, inputs.knowledge], dim=2))  # I' [B, HW, d]
        scores = self.read_attention(control.unsqueeze(1) * combined).squeeze(2)  # [B, HW]
        attention = torch.softmax(scores, dim=1)
        # the read vector comes from the unprojected knowledge base K
        return torch.bmm(attention.unsqueeze(1), inputs.knowledge).squeeze(1), attention

    def write(self, read: torch.Tensor, controls: list[torch.Tensor], memories: list[torch.Tensor]) -> torch.Tensor:
        """``m_i`` [B, d] from ``r_i``, the controls ``c_0..c_i`` and the memories ``m_0..m_{i-1}``."""
        previous = memories[-1]
        memory = self.write_combine(torch.cat([read, previous], dim=1))  # m_info
        if self.self_attention is not None:
            control = controls[-1]
            earlier_controls = torch.stack(controls[:-1], dim=1)  # c_0..c_{i-1} [B, i, d]
            scores = self.self_attention(control.unsqueeze(1) * earlier_controls).squeeze(2)  # [B, i]
            weights = torch.softmax(scores, dim=1)
            attended = torch.bmm(weights.unsqueeze(1), torch.stack(memories, dim=1)).squeeze(1)  # sum_j sa_ij m_j
            memory = self.write_attended(attended) + self.write_new(memory)
        if self.memory_gate is not None:
            gate = torch.sigmoid(self.memory_gate(controls[-1]))  # [B, 1]
            memory = gate * previous + (1.0 - gate) * memory
        return memory


@register_model
class MAC(Model):
    """MAC (Hudson & Manning, ICLR 2018): p steps of attention over the question words and the image regions.

    ``images`` [B, C, H, W] (pre-extracted feature maps, or raw pixels with ``image_encoder: conv4``),
    ``questions`` [B, T] and ``questions_length`` [B] -> answer logits [B, answer_vocabulary_size]. With d = 512,
    300-d embeddings, 28 answers and CLEVR's [1024, 14, 14] features: 20,138,526 parameters besides the
    V x 300 word embeddings (20,664,864 with self-attention and the memory gate), as the original, whose frozen
    embeddings lived in the problem. The control attention is masked at padded words (the original's was not).
    ``--visualize`` draws, per step, the read attention over the image and the control attention over the words.
    """

    @dataclass
    class Params(MACBaseParams):
        """Parameters of MAC."""

        self_attention: bool = param(False, "write unit: attend over the earlier memories, weighted by the "
                                            "similarity of their controls to the current one")
        memory_gate: bool = param(False, "write unit: a sigmoid gate of the control keeps part of the previous "
                                         "memory")

    def __init__(self, params: MACBaseParams) -> None:
        super().__init__(params)
        check_params(self.name, params)
        self.dim, self.max_step, self.dropout = params.dim, params.max_step, params.dropout
        self.input_unit = InputUnit(params)
        self.cell = self.build_cell(params)
        self.output_unit = OutputUnit(params.dim, params.answer_vocabulary_size)
        self.initial_control = nn.Parameter(torch.zeros(params.dim))  # c_0
        self.initial_memory = nn.Parameter(torch.zeros(params.dim))  # m_0
        self.input_definitions = input_definitions(params)
        self.output_definitions = {
            "predictions": DataDefinition((ANY, params.answer_vocabulary_size), "float32", "answer logits"),
        }

    def build_cell(self, params: Any) -> nn.Module:
        """The recurrent cell: ``control(inputs, step, c)``, ``read(inputs, c, m)``, ``write(r, controls, memories)``.

        S-MAC overrides this; the loop in :meth:`forward` is the same for both.
        """
        return MACCell(params.dim, params.self_attention, params.memory_gate)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Answer logits [B, answer_vocabulary_size] after ``max_step`` reasoning steps."""
        inputs = self.input_unit(batch["images"], batch["questions"], batch["questions_length"])
        batch_size = inputs.question.shape[0]
        control_mask = memory_mask = None
        if self.training and self.dropout > 0.0:
            # variational dropout: the same two masks at every step of this forward pass
            control_mask = variational_mask(batch_size, self.dim, self.dropout, inputs.question)
            memory_mask = variational_mask(batch_size, self.dim, self.dropout, inputs.question)
        controls = [_dropped(self.initial_control.expand(batch_size, -1), control_mask)]
        memories = [_dropped(self.initial_memory.expand(batch_size, -1), memory_mask)]
        control_attention, read_attention = [], []
        for step in range(self.max_step):
            control, words_attention = self.cell.control(inputs, step, controls[-1])
            controls.append(_dropped(control, control_mask))
            read, image_attention = self.cell.read(inputs, controls[-1], memories[-1])
            memories.append(_dropped(self.cell.write(read, controls, memories), memory_mask))
            control_attention.append(words_attention)
            read_attention.append(image_attention)
        if self.recording:
            self.internals["control_attention"] = torch.stack(control_attention, dim=1).detach()  # [B, p, S]
            self.internals["read_attention"] = torch.stack(read_attention, dim=1).detach()  # [B, p, HW]
            self.internals["controls"] = torch.stack(controls, dim=1).detach()  # [B, p + 1, d]
            self.internals["memories"] = torch.stack(memories, dim=1).detach()  # [B, p + 1, d]
        return self.output_unit(memories[-1], inputs.question)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Frames, one per reasoning step: the read attention over the image, the control attention over the words."""
        if "read_attention" not in self.internals:
            return None
        from miprometheus.models.vqa.figures import display_image
        from miprometheus.models.vqa.mac.figures import reasoning_frames

        image = display_image(batch, index, self.params.image_encoder)
        return reasoning_frames(self.name, batch, predictions, index, image,
                                self.internals["read_attention"][index], self.internals["control_attention"][index],
                                self.input_unit.grid_size)


def _dropped(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return values if mask is None else values * mask


__all__ = ["MAC", "MACCell"]

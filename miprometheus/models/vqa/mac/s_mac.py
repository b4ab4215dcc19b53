"""S-MAC: MAC with a simplified cell (Marois et al. 2018).

Marois, Jayram, Albouy, Kornuta, Bouhadjar, Ozcan, "On transfer learning using a MAC model variant", NeurIPS 2018
ViGIL workshop (arXiv:1811.06529). The input unit, the output unit, the learned ``c_0``, ``m_0`` and the
variational dropout are MAC's (:mod:`.mac`, :mod:`.units`); the cell has fewer linear layers. Step i:

    control   cq_i = (W_c c_{i-1} + b_c) + q_i        ca_{i,s} = w_a . (cq_i * cw_s)   (no bias)
              cv_i = softmax_s(ca_i) over the real words          c_i = sum_s cv_{i,s} cw_s
    read      I_{i,hw} = m_{i-1} * K'_hw                           (no memory projection)
              I'_{i,hw} = W_I I_{i,hw} + b_I + K'_hw               (a residual add, not a concatenation)
              ra_{i,hw} = w_r . (c_i * I'_{i,hw})   (no bias)      rv_i = softmax_hw(ra_i)
              r_i = sum_hw rv_{i,hw} K'_hw                         (only the projected knowledge base)
    write     m_i = W_m r_i + b_m                                  (not a function of m_{i-1})

No self-attention and no memory gate. As in MAC, the control attention is masked at padded words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from miprometheus.models.vqa.mac.mac import MAC
from miprometheus.models.vqa.mac.units import EncodedInputs, MACBaseParams, masked_softmax, xavier_linear
from miprometheus.registry import register_model


class SMACCell(nn.Module):
    """S-MAC's control, read and write units (the module doc's equations)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        d = dim
        self.control_previous = xavier_linear(d, d)  # W_c
        self.control_attention = xavier_linear(d, 1, bias=False)  # w_a
        self.read_interaction = xavier_linear(d, d)  # W_I
        self.read_attention = xavier_linear(d, 1, bias=False)  # w_r
        self.write_read = xavier_linear(d, d)  # W_m

    def control(self, inputs: EncodedInputs, step: int, control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``c_i`` [B, d] and the attention over the words ``cv_i`` [B, S] from ``c_{i-1}`` and ``q_i``."""
        cq = self.control_previous(control) + inputs.step_questions[step]  # [B, d]
        scores = self.control_attention(cq.unsqueeze(1) * inputs.words).squeeze(2)  # [B, S]
        attention = masked_softmax(scores, inputs.word_mask)
        return torch.bmm(attention.unsqueeze(1), inputs.words).squeeze(1), attention

    def read(self, inputs: EncodedInputs, control: torch.Tensor, memory: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``r_i`` [B, d] and the attention over the knowledge base ``rv_i`` [B, HW] from ``c_i`` and ``m_{i-1}``."""
        knowledge = inputs.projected_knowledge  # K' [B, HW, d]; the raw K is not used
        combined = self.read_interaction(memory.unsqueeze(1) * knowledge) + knowledge  # I' [B, HW, d]
        scores = self.read_attention(control.unsqueeze(1) * combined).squeeze(2)  # [B, HW]
        attention = torch.softmax(scores, dim=1)
        return torch.bmm(attention.unsqueeze(1), knowledge).squeeze(1), attention

    def write(self, read: torch.Tensor, controls: list[torch.Tensor], memories: list[torch.Tensor]) -> torch.Tensor:
        """``m_i`` [B, d] from the read vector alone (the controls and earlier memories are not used)."""
        return self.write_read(read)


@register_model
class SMAC(MAC):
    """S-MAC (Marois et al., ViGIL 2018): MAC's input and output units around a simplified reasoning cell.

    The same inputs and outputs as MAC. The cell's control unit adds ``W_c c_{i-1}`` to ``q_i`` (no concatenation),
    its read unit attends over the projected knowledge base only, and the new memory depends on the read vector
    alone. With d = 512, 300-d embeddings, 28 answers and CLEVR's [1024, 14, 14] features: 19,089,436 parameters
    besides the V x 300 word embeddings (MAC: 20,138,526). ``--visualize`` draws what MAC's does.
    """

    @dataclass
    class Params(MACBaseParams):
        """Parameters of S-MAC (MAC's, without self-attention and memory gate)."""

    def build_cell(self, params: Any) -> nn.Module:
        return SMACCell(params.dim)


__all__ = ["SMAC", "SMACCell"]

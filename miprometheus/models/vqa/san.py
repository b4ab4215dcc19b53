"""SAN: the Stacked Attention Network of Yang, He, Gao, Deng, Smola, CVPR 2016 (§3), with K hops that each refine
the query.

    v_I = CNN(image) as m = h w regions         [B, m, C]
    u^0 = v_Q = W_q LSTM(question) + b_q        [B, C]
    hop k = 1..K, each with its own parameters:
        h^k = tanh(W_I^k v_I  (+)  (W_Q^k u^{k-1} + b_A^k))    [B, m, a]   (+): the query added to every region
        p^k = softmax over the regions of (w_P^k . h^k)           [B, m]
        u^k = sum_i p^k_i v_i + u^{k-1}                            [B, C]
    answer logits = MLP(u^K)

The original MI-Prometheus SAN repeated one layer object, so its hops shared their weights, and gave
every hop the original v_Q, so the second hop repeated the first: a single attention layer. Here each hop is its own
:class:`AttentionHop` and hop k attends with u^{k-1}. The paper's b_P is left out: it adds the same number to every
region's score, which the softmax ignores (it would never get a gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from miprometheus.models.model import Model
from miprometheus.models.vqa.cnn_lstm import CNN_LSTM, AnswerClassifier, ImageEncoder, check_vqa_params, vqa_definitions
from miprometheus.models.vqa.components import QuestionEncoder
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


class AttentionHop(nn.Module):
    """One attention layer: the regions weighed by their match with the query, added to the query."""

    def __init__(self, region_size: int, attention_size: int) -> None:
        super().__init__()
        self.image_projection = nn.Linear(region_size, attention_size, bias=False)  # W_I
        self.query_projection = nn.Linear(region_size, attention_size)  # W_Q and b_A
        self.score = nn.Linear(attention_size, 1, bias=False)  # w_P

    def forward(self, regions: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``regions`` [B, m, C], ``query`` u^{k-1} [B, C] -> (u^k [B, C], attention p^k [B, m])."""
        hidden = torch.tanh(self.image_projection(regions) + self.query_projection(query).unsqueeze(1))  # [B, m, a]
        attention = torch.softmax(self.score(hidden).squeeze(-1), dim=1)  # [B, m]
        attended = torch.bmm(attention.unsqueeze(1), regions).squeeze(1)  # sum_i p_i v_i: [B, C]
        return attended + query, attention


@register_model
class SAN(Model):
    """Stacked Attention Network: ``num_hops`` attention layers over the image regions, each with its own weights
    and each refining the query the previous one produced; an MLP (256, 256, dropout 0.5) reads the last query.

    ``images`` [B, C, H, W], ``questions`` [B, T], ``questions_length`` [B] -> ``predictions`` [B, answers]. The
    regions are the CNN's cells (64 px -> 4 x 4 = 16 regions of 24 values; 128 px -> 64; CLEVR features through
    ``image_encoder: features`` -> 14 x 14). 131,338 parameters at 64 px with 20 question tokens, 10 answers and
    2 hops. ``--visualize`` draws each hop's attention over the image.
    """

    @dataclass
    class Params(CNN_LSTM.Params):
        """Parameters of SAN: the CNN+LSTM baseline's, and the attention's."""

        attention_size: int = param(128, "size a of the space where regions and query meet (h^k)", min=1, max=MAX_UNITS)
        num_hops: int = param(2, "number K of attention layers (the paper: 2 is best)", min=1)

    def __init__(self, params: SAN.Params) -> None:
        super().__init__(params)
        p = params
        check_vqa_params(self.name, p)
        self.image_encoder = ImageEncoder(p.image_encoder, p.num_channels, p.conv_filters, p.height, p.width)
        self.question_encoder = QuestionEncoder(p.question_vocabulary_size, p.embedding_size, p.question_hidden_size)
        self.question_projection = nn.Linear(self.question_encoder.output_size, p.conv_filters)  # v_Q in R^C
        self.hops = nn.ModuleList(AttentionHop(p.conv_filters, p.attention_size) for _ in range(p.num_hops))
        self.classifier = AnswerClassifier(p.conv_filters, p.classifier_hidden, p.answer_vocabulary_size, p.dropout)
        self.input_definitions, self.output_definitions = vqa_definitions(p)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Answer logits [B, answers]; while recording, ``internals["attention"]`` [B, K, m], every hop's."""
        regions = self.image_encoder(batch["images"]).flatten(2).transpose(1, 2)  # [B, m, C], row by row
        _, question = self.question_encoder(batch["questions"], batch["questions_length"])
        query = self.question_projection(question)  # u^0 = v_Q
        attentions = []
        for hop in self.hops:
            query, attention = hop(regions, query)
            attentions.append(attention)
        if self.recording:
            self.internals["attention"] = torch.stack(attentions, dim=1).detach()
        return self.classifier(query)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Each hop's attention of sample ``index`` over its image (or alone, for features), with the answers."""
        if "attention" not in self.internals:
            return None
        from miprometheus.models.vqa.figures import attention_figure, display_image

        grid = self.image_encoder.grid
        maps = [(f"hop {k + 1} attention", hop.reshape(grid))
                for k, hop in enumerate(self.internals["attention"][index])]
        return attention_figure(display_image(batch, index, self.params.image_encoder), maps, self.name, batch,
                                predictions, index)


__all__ = ["SAN", "AttentionHop"]

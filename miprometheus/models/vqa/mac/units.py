"""What MAC and S-MAC share: parameters, input unit, output unit, dropout masks, inits.

Hudson, Manning 2018 (MAC) and Marois et al. 2018 (S-MAC).

Input unit. The knowledge base ``K`` [B, HW, d] is the image through two 3x3 convolutions (ELU after each), from
pre-extracted feature maps (``image_encoder: features``, the paper's ResNet-101 conv4 [1024, 14, 14]) or from
raw pixels through the RN paper's 4-layer CNN first (``conv4``). ``K' = W_k K + b_k`` is its projection, computed
once per forward. The question's learned embeddings go through a packed bidirectional LSTM of d units per
direction: the contextual words ``cw_s = W_cw [h_s->; h_s<-] + b`` [B, S, d], the question
``q = [h_S->; h_1<-]`` [B, 2d] and, for each reasoning step i, the position-aware question ``q_i = W_i q + b_i``.

Output unit: ``y = W_2 ELU(W_1 [m_p; q] + b_1) + b_2``, memory first, then question; logits.

Initialisation as the original: every linear layer Xavier-uniform with a zero bias, except the first classifier
layer (Kaiming-uniform); the two knowledge-base convolutions Kaiming-uniform with a zero bias; the LSTM and the
embedding PyTorch's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.vqa.components import ConvInputModel, QuestionEncoder, question_mask
from miprometheus.params import MAX_UNITS, param


@dataclass
class MACBaseParams:
    """Parameters shared by MAC and S-MAC."""

    question_vocabulary_size: int = param(doc="number of question tokens, PAD (0) and UNK included (PAD and one "
                                              "word at least)", from_problem=True, min=2)
    answer_vocabulary_size: int = param(doc="number of answers (size of the logits)", from_problem=True, min=1)
    num_channels: int = param(3, "channels of the images (raw pixels) or of the pre-extracted feature maps",
                              from_problem=True, min=1)
    height: int = param(128, "height of the images or feature maps", from_problem=True, min=1)
    width: int = param(128, "width of the images or feature maps", from_problem=True, min=1)
    dim: int = param(512, "size d of the control, memory and knowledge vectors (the LSTM has d units per "
                          "direction)", min=1, max=MAX_UNITS)
    max_step: int = param(12, "number p of reasoning steps", min=1)
    embedding_size: int = param(300, "size of the learned word embeddings", min=1, max=MAX_UNITS)
    dropout: float = param(0.15, "variational dropout rate on control and memory (one mask per forward pass, "
                                 "the same at every step; training only)", min=0, max=1)
    image_encoder: Literal["features", "conv4"] = param(
        "features", "features: pre-extracted feature maps [B, num_channels, h, w] (CLEVR's ResNet-101 conv4); "
                    "conv4: raw pixels through the RN paper's 4-layer CNN (24 filters, stride 2) first")


def check_params(model: str, params: MACBaseParams) -> None:
    """A ConfigError naming the model for a dropout rate a MAC-like model cannot be built with (the bounds
    declared on its parameters are checked when the model is made)."""
    if not 0.0 <= params.dropout < 1.0:
        raise ConfigError(f"model {model}: dropout must be in [0, 1), got {params.dropout}")


def input_definitions(params: MACBaseParams) -> dict[str, DataDefinition]:
    """The batch keys a MAC-like model reads (the VQA batch format)."""
    what = "images" if params.image_encoder == "conv4" else "pre-extracted feature maps"
    return {
        "images": DataDefinition((ANY, params.num_channels, params.height, params.width), "float32", what),
        "questions": DataDefinition((ANY, ANY), "int64", "question token indices, 0 = PAD"),
        "questions_length": DataDefinition((ANY,), "int64", "tokens of each question"),
    }


def xavier_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """A linear layer initialised as the original's ``linear()``: Xavier-uniform weights, zero bias."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis of ``scores`` where ``mask`` is True; exactly 0 where it is False."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def variational_mask(batch_size: int, size: int, rate: float, like: torch.Tensor) -> torch.Tensor:
    """A dropout mask [B, size]: Bernoulli(1 - rate) draws scaled by 1 / (1 - rate), to reuse at every step."""
    keep = 1.0 - rate
    return torch.bernoulli(torch.full((batch_size, size), keep, dtype=like.dtype, device=like.device)) / keep


@dataclass
class EncodedInputs:
    """What the input unit gives the reasoning cell, for one batch."""

    knowledge: torch.Tensor  #: K [B, HW, d]
    projected_knowledge: torch.Tensor  #: K' = W_k K + b_k [B, HW, d]
    words: torch.Tensor  #: contextual words cw [B, S, d] (S = the batch's longest question)
    word_mask: torch.Tensor  #: True at real tokens [B, S]
    question: torch.Tensor  #: q = [forward state at the last token; backward state at the first] [B, 2d]
    step_questions: list[torch.Tensor]  #: q_i [B, d] for i = 1..p


class InputUnit(nn.Module):
    """Knowledge base, contextual words, question and position-aware questions (see the module doc)."""

    def __init__(self, params: MACBaseParams) -> None:
        super().__init__()
        d = params.dim
        self.pixels_cnn: ConvInputModel | None = None
        channels, height, width = params.num_channels, params.height, params.width
        if params.image_encoder == "conv4":
            self.pixels_cnn = ConvInputModel(params.num_channels)
            channels = self.pixels_cnn.out_channels
            height, width = self.pixels_cnn.output_size(height, width)
        #: (h, w) of the knowledge base: the read attention is over h * w locations
        self.grid_size = (height, width)
        self.knowledge_base = nn.Sequential(nn.Conv2d(channels, d, 3, padding=1), nn.ELU(),
                                            nn.Conv2d(d, d, 3, padding=1), nn.ELU())
        for conv in (self.knowledge_base[0], self.knowledge_base[2]):
            nn.init.kaiming_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.knowledge_projection = xavier_linear(d, d)
        self.question_encoder = QuestionEncoder(params.question_vocabulary_size, params.embedding_size, d,
                                                bidirectional=True)
        self.context_words = xavier_linear(2 * d, d)
        self.step_questions = nn.ModuleList(xavier_linear(2 * d, d) for _ in range(params.max_step))

    def forward(self, images: torch.Tensor, questions: torch.Tensor, lengths: torch.Tensor) -> EncodedInputs:
        features = images if self.pixels_cnn is None else self.pixels_cnn(images)
        knowledge = self.knowledge_base(features).flatten(2).transpose(1, 2)  # [B, d, h, w] -> [B, hw, d]
        outputs, question = self.question_encoder(questions, lengths)  # [B, S, 2d], [B, 2d]
        return EncodedInputs(
            knowledge=knowledge,
            projected_knowledge=self.knowledge_projection(knowledge),
            words=self.context_words(outputs),
            # the encoder reads at least one token of every question, so the mask does too
            word_mask=question_mask(questions, lengths.clamp(min=1)),
            question=question,
            step_questions=[layer(question) for layer in self.step_questions],
        )


class OutputUnit(nn.Module):
    """The classifier ``W_2 ELU(W_1 [m_p; q] + b_1) + b_2``: [B, d] memory and [B, 2d] question -> logits."""

    def __init__(self, dim: int, answers: int) -> None:
        super().__init__()
        self.classifier = nn.Sequential(xavier_linear(3 * dim, dim), nn.ELU(), xavier_linear(dim, answers))
        nn.init.kaiming_uniform_(self.classifier[0].weight)

    def forward(self, memory: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([memory, question], dim=1))


__all__ = ["EncodedInputs", "InputUnit", "MACBaseParams", "OutputUnit", "check_params", "input_definitions",
           "masked_softmax", "variational_mask", "xavier_linear"]

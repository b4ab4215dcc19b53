"""Parts shared by the VQA models: the RN paper's small image CNN and the question encoder.

Every VQA model reads the batch format of :mod:`miprometheus.problems.image_text_to_class.vqa_problem`:
``images`` [B, C, H, W], ``questions`` [B, T] int64 (0 = PAD) and ``questions_length`` [B].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def conv_output_size(size: int, layers: int = 4) -> int:
    """Height or width after ``layers`` 3x3 convolutions of stride 2 and padding 1: floor((d + 2 - 3) / 2) + 1."""
    for _ in range(layers):
        size = (size - 1) // 2 + 1
    return size


class ConvInputModel(nn.Module):
    """The RN paper's "CLEVR from pixels" CNN (Santoro et al. 2017): 4 x (conv 3x3 stride 2 pad 1, BatchNorm, ReLU).

    ``[B, C, H, W] -> [B, filters, h, w]`` with h, w = :func:`conv_output_size` (128 px -> 8 x 8; 64 px -> 4 x 4).
    16,488 parameters with 3 input channels and 24 filters.
    """

    def __init__(self, in_channels: int = 3, filters: int = 24, layers: int = 4) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers):
            blocks += [nn.Conv2d(channels, filters, 3, stride=2, padding=1), nn.BatchNorm2d(filters), nn.ReLU()]
            channels = filters
        self.layers = nn.Sequential(*blocks)
        self.out_channels = filters
        self.num_layers = layers

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return conv_output_size(height, self.num_layers), conv_output_size(width, self.num_layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class QuestionEncoder(nn.Module):
    """Learned word embeddings (PAD = 0 gets a zero, untrained vector) and an LSTM over the real tokens only.

    ``forward(questions [B, T], lengths [B]) -> (outputs [B, T, D], final [B, D])``, D = ``hidden_size`` x
    directions. The sequences are packed, so ``final`` is the state after each question's last token, never
    after its padding (the original read the output at index -1, after the padding);
    for a bidirectional LSTM it is [forward state at the last token; backward state at the first]. ``outputs``
    are zero at padded steps.
    """

    def __init__(self, vocabulary_size: int, embedding_size: int, hidden_size: int, bidirectional: bool = False,
                 pad_index: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, embedding_size, padding_idx=pad_index)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, questions: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.embedding(questions)
        packed = pack_padded_sequence(embedded, lengths.detach().cpu().clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        outputs, (h_n, _) = self.lstm(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=questions.shape[1])
        final = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.lstm.bidirectional else h_n[-1]
        return outputs, final


def question_mask(questions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """True at the real tokens of ``questions`` [B, T] (the first ``lengths`` positions), False at padding."""
    positions = torch.arange(questions.shape[1], device=questions.device)
    return positions.unsqueeze(0) < lengths.to(questions.device).unsqueeze(1)


__all__ = ["ConvInputModel", "QuestionEncoder", "conv_output_size", "question_mask"]

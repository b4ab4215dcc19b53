"""ShapeColorQuery: Sort-of-CLEVR's scenes and answers, the question naming the object by shape and colour.

An MI-Prometheus variant of Sort-of-CLEVR. The scenes, the 7 question types and the 10 answers are Sort-of-CLEVR's,
read from the same cache file for the same parameters (the questions are derived from the stored scenes when loading).
The question is 3 tokens, ``[shape, colour, type]``: "circle red nearest_color". For the type ``shape``
the first token is ``object``, so the question does not give the answer away.

The original's float encoding is kept as ``questions_encoding`` [B, 3, 7] (7 = the most of 6 colours,
2 shapes, 7 types): row 0 the shape one-hot (all zeros for the type ``shape``), row 1 the colour one-hot,
row 2 the question-type one-hot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from miprometheus.data import DataDefinition
from miprometheus.problems.image_text_to_class.sort_of_clevr import (
    COLOR_NAMES,
    NUM_TYPES,
    QUESTION_TYPE_NAMES,
    SHAPE_NAMES,
    SortOfCLEVR,
)
from miprometheus.registry import register_problem

#: the first token of a question of type ``shape`` (0), in place of the shape it asks for
HIDDEN_SHAPE = "object"
WORD_SIZE = max(len(COLOR_NAMES), len(SHAPE_NAMES), NUM_TYPES)
SHAPE_TYPE = 0


@register_problem
class ShapeColorQuery(SortOfCLEVR):
    """Sort-of-CLEVR with 3-token questions ``[shape, colour, type]`` (``object`` when the shape is asked).

    Batches as SortOfCLEVR's (``questions`` [B, 3] int64), with ``questions_encoding`` [B, 3, 7] float32: the
    original's rows of shape (zeros for the type ``shape``), colour and type one-hot bits.
    """

    def question_tokens(self, colors: torch.Tensor, shapes: torch.Tensor,
                        types: torch.Tensor) -> list[Sequence[str]]:
        """Each question as ``[shape or "object", colour, type-word]``."""
        words = [[[(HIDDEN_SHAPE if t == SHAPE_TYPE else shape, color, word)
                   for t, word in enumerate(QUESTION_TYPE_NAMES)] for color in COLOR_NAMES] for shape in SHAPE_NAMES]
        return [words[s][c][t] for c, s, t in zip(colors.tolist(), shapes.tolist(), types.tolist())]

    def question_encoding(self, colors: torch.Tensor, shapes: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """The original's question, float32 [B, 3, 7]: shape (zero row for type ``shape``), colour, type."""
        shape_row = F.one_hot(shapes, WORD_SIZE) * (types != SHAPE_TYPE).unsqueeze(1)
        return torch.stack([shape_row, F.one_hot(colors, WORD_SIZE), F.one_hot(types, WORD_SIZE)], dim=1).float()

    def encoding_definition(self) -> DataDefinition:
        return DataDefinition((-1, 3, WORD_SIZE), "float32",
                              "the original's question rows: shape one-hot (zeros when the shape is asked), "
                              "colour one-hot, question-type one-hot")


__all__ = ["HIDDEN_SHAPE", "ShapeColorQuery"]

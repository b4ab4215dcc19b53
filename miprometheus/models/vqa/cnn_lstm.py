"""CNN_LSTM: the CLEVR paper's CNN+LSTM baseline (Johnson et al. 2017), and the image encoder and answer classifier that
SAN and the Relational Network build on.

    v = flatten(CNN(image))            [B, F h w]   the image as one vector
    q = LSTM(question)                 [B, H_q]     the state after the question's last real token
    y = W3 Dropout(ReLU(W2 ReLU(W1 [v; q])))        answer logits [B, answers]

The CNN is the RN paper's small one (4 x conv 3x3 stride 2, 24 filters: :class:`ConvInputModel`) trained from
pixels, or a 1x1 projection of pre-extracted feature maps (CLEVR's ResNet-101 [B, 1024, 14, 14]). Unlike the
original, the question's final state is read at its last real token (packed LSTM) and dropout is off in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.models.vqa.components import ConvInputModel, QuestionEncoder
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model

#: what ``image_encoder`` may name: raw pixels through the 4-layer CNN, or pre-extracted feature maps.
IMAGE_ENCODERS = ("conv4", "features")


class ImageEncoder(nn.Module):
    """Images to a grid of vectors, ``[B, C, H, W] -> [B, filters, h, w]``; ``grid`` = (h, w).

    ``conv4``: raw pixels through :class:`ConvInputModel` (64 px -> 4 x 4, 128 px -> 8 x 8). ``features``:
    pre-extracted feature maps projected cell by cell (1x1 convolution, then ReLU) to ``filters`` channels, so
    every model sees regions of the same size whatever the input; the grid stays H x W.
    """

    def __init__(self, kind: str, in_channels: int, filters: int, height: int, width: int) -> None:
        super().__init__()
        if kind == "conv4":
            cnn = ConvInputModel(in_channels, filters)
            self.layers: nn.Module = cnn
            self.grid = cnn.output_size(height, width)
        else:
            self.layers = nn.Sequential(nn.Conv2d(in_channels, filters, kernel_size=1), nn.ReLU())
            self.grid = (height, width)
        self.kind = kind
        self.out_channels = filters

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class AnswerClassifier(nn.Sequential):
    """The answer MLP shared by the VQA models: Linear -> ReLU -> Linear -> ReLU -> Dropout -> Linear (logits).

    CNN+LSTM's and SAN's classifier and the RN's f_phi (Johnson et al. 2017; Yang et al. 2016; Santoro et al. 2017).
    The dropout is a module, so it is off in eval mode (the original MI-Prometheus's always-on dropout is not
    reproduced).
    """

    def __init__(self, in_size: int, hidden_size: int, num_answers: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden_size, num_answers))


def check_vqa_params(model_name: str, params: CNN_LSTM.Params, extra: Sequence[tuple[bool, str]] = ()) -> None:
    """Raise a ConfigError naming ``model_name`` for the first invalid parameter (the shared ones, then ``extra``);
    the bounds declared on the parameters are checked when the model is made."""
    p = params
    checks = [
        (p.image_encoder in IMAGE_ENCODERS,
         f"image_encoder must be one of {', '.join(IMAGE_ENCODERS)}, got '{p.image_encoder}'"),
        (0.0 <= p.dropout < 1.0, f"dropout must be in [0, 1), got {p.dropout}"),
        *extra,
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"model {model_name}: {message}")


def vqa_definitions(params: CNN_LSTM.Params) -> tuple[dict[str, DataDefinition], dict[str, DataDefinition]]:
    """The input definitions (images, questions, their lengths) and the output definition of a VQA model."""
    p = params
    images = "pre-extracted feature maps" if p.image_encoder == "features" else "images in [0, 1]"
    inputs = {
        "images": DataDefinition((ANY, p.num_channels, p.height, p.width), "float32", images),
        "questions": DataDefinition((ANY, ANY), "int64", "question token indices, 0 = PAD"),
        "questions_length": DataDefinition((ANY,), "int64", "tokens of each question"),
    }
    outputs = {"predictions": DataDefinition((ANY, p.answer_vocabulary_size), "float32", "answer logits")}
    return inputs, outputs


@register_model
class CNN_LSTM(Model):
    """CNN+LSTM baseline: the flattened CNN features of the image and the LSTM state of the question, concatenated,
    then an MLP (256, 256, dropout 0.5) to the answer logits.

    ``images`` [B, C, H, W], ``questions`` [B, T], ``questions_length`` [B] -> ``predictions`` [B, answers].
    225,522 parameters at 64 px with 20 question tokens and 10 answers (the flattened 24 x 4 x 4 image is 384
    values; at 128 px, 24 x 8 x 8 = 1,536). ``--visualize`` draws the image under the norm of its CNN features per
    cell, with the question and the predicted and target answers.
    """

    @dataclass
    class Params:
        """Parameters of the CNN+LSTM baseline (SAN and the Relational Network extend them)."""

        question_vocabulary_size: int = param(doc="number of question tokens, PAD and UNK included (PAD and one "
                                                  "word at least)", from_problem=True, min=2)
        answer_vocabulary_size: int = param(doc="number of answers (size of the logits)", from_problem=True, min=2)
        num_channels: int = param(doc="image channels (or feature maps of pre-extracted features)", from_problem=True,
                                  min=1)
        height: int = param(doc="image height (or feature-map height)", from_problem=True, min=1)
        width: int = param(doc="image width (or feature-map width)", from_problem=True, min=1)
        image_encoder: Literal["conv4", "features"] = param(
            "conv4", "conv4: raw pixels through the RN paper's 4-layer CNN; features: pre-extracted feature maps "
                     "(e.g. CLEVR's [1024, 14, 14]) through a 1x1 convolution and ReLU")
        conv_filters: int = param(24, "channels of the image encoder's output (the size of one region/object)",
                                  min=1)
        embedding_size: int = param(32, "size of the learned word embeddings", min=1, max=MAX_UNITS)
        question_hidden_size: int = param(64, "units of the question LSTM", min=1, max=MAX_UNITS)
        classifier_hidden: int = param(256, "units of each of the answer classifier's two hidden layers",
                                       min=1, max=MAX_UNITS)
        dropout: float = param(0.5, "dropout before the classifier's last layer (training only)", min=0, max=1)

    def __init__(self, params: CNN_LSTM.Params) -> None:
        super().__init__(params)
        p = params
        check_vqa_params(self.name, p)
        self.image_encoder = ImageEncoder(p.image_encoder, p.num_channels, p.conv_filters, p.height, p.width)
        self.question_encoder = QuestionEncoder(p.question_vocabulary_size, p.embedding_size, p.question_hidden_size)
        h, w = self.image_encoder.grid
        self.classifier = AnswerClassifier(p.conv_filters * h * w + self.question_encoder.output_size,
                                           p.classifier_hidden, p.answer_vocabulary_size, p.dropout)
        self.input_definitions, self.output_definitions = vqa_definitions(p)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Answer logits [B, answers] for ``images``, ``questions`` and ``questions_length``."""
        features = self.image_encoder(batch["images"])  # [B, F, h, w]
        _, question = self.question_encoder(batch["questions"], batch["questions_length"])  # [B, H_q]
        if self.recording:
            self.internals["features"] = features.detach()
        return self.classifier(torch.cat([features.flatten(1), question], dim=1))

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """The image of sample ``index`` under the norm of its CNN features per cell, the question and the answers."""
        if "features" not in self.internals:
            return None
        from miprometheus.models.vqa.figures import attention_figure, display_image

        norms = self.internals["features"][index].norm(dim=0)  # [h, w]
        return attention_figure(display_image(batch, index, self.params.image_encoder), [("CNN feature norm", norms)],
                                self.name, batch, predictions, index)


__all__ = ["IMAGE_ENCODERS", "AnswerClassifier", "CNN_LSTM", "ImageEncoder", "check_vqa_params", "vqa_definitions"]

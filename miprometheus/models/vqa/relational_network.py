"""RelationalNetwork: the Relational Network of Santoro et al., NIPS 2017, from pixels ("CLEVR from pixels").

    objects o_i = [CNN cell i; x_i; y_i]             [B, n, k + 2], n = h w cells, row by row
    q = LSTM(question), or its fixed binary code      [B, |q|]
    RN = f_phi( sum over all ordered pairs (i, j) of g_theta([o_i; o_j; q]) )     answer logits

All n^2 ordered pairs count, (i, i) and both orders included (the original's [o_c; o_a; q] with c = i, a = j).
g_theta is 4 x (Linear 256, ReLU), f_phi is Linear 256, ReLU, Linear 256, ReLU, Dropout 0.5, Linear (logits).
The coordinates are ``linspace(-0.5, 0.5)``: x along the columns, y along the rows. ``question_input: code``
feeds Sort-of-CLEVR's 13-bit question code (6 colour + 7 type one-hot bits) straight to g_theta, as the paper does
on Sort-of-CLEVR (Santoro et al. 2017, supplementary material D); ``lstm`` reads the tokens (its CLEVR set-up).

The memory pitfall: g_theta runs on B n^2 pair vectors. Building them ([B, n^2, 2(k+2) + |q|], by
repeating each object n times) is never done. The first layer of g_theta is linear, so

    W1 [o_i; o_j; q] + b1 = (W1_first o_i) + (W1_second o_j) + (W1_q q + b1)

with W1 = [W1_first | W1_second | W1_q] split by columns: two products over the n objects and one over the
question, added by broadcasting into the first layer's [B, n, n, 256] output. That saves the pair tensor and a
fifth of g_theta's multiplications; the first layer's weights are still one ``nn.Linear`` (the paper's layer, and
its parameter count). The remaining layers are one batched matmul over the B n^2 rows.

Memory at 128 px (8 x 8 = 64 objects, 4,096 pairs), batch 64: every g_theta activation is 262,144 x 256 floats,
268 MB, and training keeps about five of them for the backward pass. Measured on the CPU (float32, one thread), a
training step raises the peak memory by 1.4 GB (1.6 GB with the pair vectors built) and takes about 7 s (10 s
with them); so no chunking of the pairs is needed. 64 px (16 objects, 256 pairs) needs 16 times less: 0.2 GB and
~0.4 s. CLEVR's 14 x 14 feature maps give 38,416 pairs per question (2.5 GB per activation at batch 64): a GPU's
job, or pool the features first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miprometheus.data import ANY, DataDefinition
from miprometheus.models.model import Model
from miprometheus.models.vqa.cnn_lstm import CNN_LSTM, AnswerClassifier, ImageEncoder, check_vqa_params, vqa_definitions
from miprometheus.models.vqa.components import QuestionEncoder
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model

#: the pairs ``plot`` draws: those with the largest ||g_theta|| (their share of the sum f_phi reads).
PLOTTED_PAIRS = 5


def coordinate_grid(height: int, width: int, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (x, y) tag of every cell of an ``height`` x ``width`` grid, row by row: ``[h w, 2]`` in [-0.5, 0.5]."""
    y = torch.linspace(-0.5, 0.5, height, device=device, dtype=dtype)
    x = torch.linspace(-0.5, 0.5, width, device=device, dtype=dtype)
    rows, columns = torch.meshgrid(y, x, indexing="ij")  # y varies along the rows, x along the columns
    return torch.stack([columns, rows], dim=-1).reshape(height * width, 2)


@register_model
class RelationalNetwork(Model):
    """Relational Network: g_theta over every ordered pair of image cells (tagged with their coordinates) and the
    question, summed over the pairs, then f_phi to the answer logits.

    ``images`` [B, C, H, W], ``questions`` [B, T], ``questions_length`` [B] -> ``predictions`` [B, answers].
    477,938 parameters with 20 question tokens and 10 answers, at any image size (the CNN is convolutional);
    the original's 364,914 fed Sort-of-CLEVR's 13-bit question code straight into g_theta instead of a 128-unit
    LSTM. ``--visualize`` draws the image with the pairs of cells whose g_theta output is largest.
    """

    @dataclass
    class Params(CNN_LSTM.Params):
        """Parameters of the Relational Network: the CNN+LSTM baseline's (f_phi is its classifier), and g_theta's."""

        question_hidden_size: int = param(128, "units of the question LSTM (the paper's 128)", min=1, max=MAX_UNITS)
        classifier_hidden: int = param(256, "units of each of f_phi's two hidden layers", min=1, max=MAX_UNITS)
        g_theta_layers: int = param(4, "number of layers of g_theta (Linear then ReLU each)", min=1)
        g_theta_units: int = param(256, "units of each layer of g_theta", min=1, max=MAX_UNITS)
        aggregation: str = param("sum", "how the pairs' g_theta outputs are combined: sum (the paper) or mean "
                                        "(the same up to a factor 1/n^2, which keeps f_phi's input at one scale)")
        question_input: str = param("lstm", "how g_theta reads the question: lstm (its tokens through the question "
                                            "LSTM) or code (the problem's fixed binary code, questions_encoding, "
                                            "flattened: the paper's Sort-of-CLEVR set-up)")
        question_code_size: int = param(13, "values of the flattened question code when question_input is code "
                                            "(13 = Sort-of-CLEVR's 6 colour + 7 type bits; 21 for ShapeColorQuery)",
                                        min=1)

    def __init__(self, params: RelationalNetwork.Params) -> None:
        super().__init__(params)
        p = params
        check_vqa_params(self.name, p, [
            (p.aggregation in ("sum", "mean"), f"aggregation must be sum or mean, got {p.aggregation!r}"),
            (p.question_input in ("lstm", "code"), f"question_input must be lstm or code, got {p.question_input!r}")])
        self.image_encoder = ImageEncoder(p.image_encoder, p.num_channels, p.conv_filters, p.height, p.width)
        if p.question_input == "lstm":
            self.question_encoder: QuestionEncoder | None = QuestionEncoder(
                p.question_vocabulary_size, p.embedding_size, p.question_hidden_size)
            question_size = self.question_encoder.output_size
        else:
            self.question_encoder = None
            question_size = p.question_code_size
        self.object_size = p.conv_filters + 2
        pair_size = 2 * self.object_size + question_size
        self.g_theta = nn.ModuleList([nn.Linear(pair_size, p.g_theta_units)] +
                                     [nn.Linear(p.g_theta_units, p.g_theta_units) for _ in range(p.g_theta_layers - 1)])
        self.classifier = AnswerClassifier(p.g_theta_units, p.classifier_hidden, p.answer_vocabulary_size,
                                           p.dropout)  # f_phi
        self.input_definitions, self.output_definitions = vqa_definitions(p)
        if p.question_input == "code":
            self.input_definitions["questions_encoding"] = DataDefinition(
                (ANY, ANY), "float32", f"the question's fixed binary code ({p.question_code_size} values once "
                                       "flattened)")

    def question(self, batch: dict[str, Any]) -> torch.Tensor:
        """The question vector g_theta reads, ``[B, |q|]``: the LSTM's final state or the flattened binary code."""
        if self.question_encoder is None:
            code = batch["questions_encoding"].flatten(1)
            if code.shape[1] != self.params.question_code_size:
                raise ValueError(f"{self.name}: questions_encoding holds {code.shape[1]} values per question, "
                                 f"question_code_size is {self.params.question_code_size}")
            return code
        _, question = self.question_encoder(batch["questions"], batch["questions_length"])
        return question

    def objects(self, images: torch.Tensor) -> torch.Tensor:
        """The CNN's cells tagged with their coordinates, ``[B, n, k + 2]`` (row by row)."""
        features = self.image_encoder(images)  # [B, k, h, w]
        batch_size, _, height, width = features.shape
        cells = features.flatten(2).transpose(1, 2)  # [B, n, k]
        coordinates = coordinate_grid(height, width, features.device, features.dtype)
        return torch.cat([cells, coordinates.expand(batch_size, -1, -1)], dim=2)

    def relations(self, objects: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """g_theta([o_i; o_j; q]) for every ordered pair, ``[B, n, n, units]`` (pair (i, j) at [:, i, j]).

        The first layer is computed by parts and broadcast (module docstring), never on the pair vectors.
        """
        first = self.g_theta[0]
        s = self.object_size
        weight_first, weight_second, weight_question = first.weight.split([s, s, first.in_features - 2 * s], dim=1)
        by_first = F.linear(objects, weight_first)  # [B, n, units]: W1_first o_i
        by_second = F.linear(objects, weight_second) + F.linear(question, weight_question, first.bias).unsqueeze(1)
        hidden = torch.relu(by_first.unsqueeze(2) + by_second.unsqueeze(1))  # [B, n (i), n (j), units]
        for layer in self.g_theta[1:]:
            hidden = torch.relu(layer(hidden))
        return hidden

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Answer logits [B, answers]; while recording, ``internals["pair_norms"]`` [B, n, n] = ||g_theta(i, j)||."""
        objects = self.objects(batch["images"])
        question = self.question(batch)
        relations = self.relations(objects, question)
        if self.recording:
            self.internals["pair_norms"] = relations.detach().norm(dim=-1)
        pooled = relations.sum(dim=(1, 2)) if self.params.aggregation == "sum" else relations.mean(dim=(1, 2))
        return self.classifier(pooled)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Sample ``index``'s image with the pairs of cells of largest ||g_theta||, the question and the answers."""
        if "pair_norms" not in self.internals:
            return None
        from miprometheus.models.vqa.figures import display_image, pairs_figure

        norms = self.internals["pair_norms"][index]  # [n, n]
        n = norms.shape[0]
        top = torch.topk(norms.flatten(), min(PLOTTED_PAIRS, n * n))
        pairs = [divmod(int(k), n) for k in top.indices]
        return pairs_figure(display_image(batch, index, self.params.image_encoder), self.image_encoder.grid, pairs,
                            top.values.tolist(), self.name, batch, predictions, index,
                            what="pairs (cell i, cell j) by ||g_theta(o_i, o_j, q)||")


__all__ = ["PLOTTED_PAIRS", "RelationalNetwork", "coordinate_grid"]

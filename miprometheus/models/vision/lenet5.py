"""LeNet5: the modern LeNet-5 (ReLU, max pooling, full C3) for 32x32 images and 10 classes (LeCun et al. 1998)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.registry import register_model

NUM_CLASSES = 10


@register_model
class LeNet5(Model):
    """LeNet-5 with ReLU and max pooling: ``images`` [B, C, 32, 32] -> logits [B, 10] (61,706 parameters on grey
    images, 62,006 on RGB ones such as CIFAR-10).

    C1 conv 1->6 5x5, ReLU, S2 max-pool 2; C3 conv 6->16 5x5, ReLU, S4 max-pool 2;
    C5 conv 16->120 5x5, ReLU; F6 linear 120->84, ReLU; output linear 84->10.
    """

    @dataclass
    class Params:
        """Parameters of LeNet5: the 32x32 input and the 10 classes are fixed by the architecture."""

        num_channels: int = param(1, "image channels (1: MNIST, 3: CIFAR-10)", from_problem=True, min=1)

    def __init__(self, params: LeNet5.Params | None = None) -> None:
        params = params if params is not None else LeNet5.Params()
        super().__init__(params)
        self.c1 = torch.nn.Conv2d(params.num_channels, 6, kernel_size=5)
        self.s2 = torch.nn.MaxPool2d(kernel_size=2, stride=2)
        self.c3 = torch.nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = torch.nn.MaxPool2d(kernel_size=2, stride=2)
        self.c5 = torch.nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = torch.nn.Linear(120, 84)
        self.output = torch.nn.Linear(84, NUM_CLASSES)
        self.input_definitions = {
            "images": DataDefinition((ANY, params.num_channels, 32, 32), "float32", "32x32 images"),
        }
        self.output_definitions = {
            "predictions": DataDefinition((ANY, NUM_CLASSES), "float32", "class logits"),
        }

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Class logits [B, 10] for ``batch["images"]`` [B, 1, 32, 32]."""
        c1 = torch.relu(self.c1(batch["images"]))  # 6 x 28 x 28
        c3 = torch.relu(self.c3(self.s2(c1)))  # 6 x 14 x 14 -> 16 x 10 x 10
        x = torch.relu(self.c5(self.s4(c3))).flatten(1)  # 16 x 5 x 5 -> 120
        x = torch.relu(self.f6(x))  # 84
        if self.recording:
            self.internals["C1"], self.internals["C3"] = c1.detach(), c3.detach()
        return self.output(x)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """The input, its prediction and target, and the maps of C1 and C3 (after ReLU) of sample ``index``."""
        if "C1" not in self.internals:
            return None
        from miprometheus.models.vision.figures import classifier_figure

        return classifier_figure(self.name, batch, predictions, index,
                                 [(name, self.internals[name]) for name in ("C1", "C3")])

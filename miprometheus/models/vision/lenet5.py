"""LeNet5: the modern LeNet-5 (ReLU, max pooling, full C3) for 1x32x32 images and 10 classes (models spec §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.models.model import Model
from miprometheus.registry import register_model

NUM_CLASSES = 10


@register_model
class LeNet5(Model):
    """LeNet-5 with ReLU and max pooling: ``images`` [B, 1, 32, 32] -> logits [B, 10] (61,706 parameters).

    C1 conv 1->6 5x5, ReLU, S2 max-pool 2; C3 conv 6->16 5x5, ReLU, S4 max-pool 2;
    C5 conv 16->120 5x5, ReLU; F6 linear 120->84, ReLU; output linear 84->10.
    """

    @dataclass
    class Params:
        """LeNet5 has no parameters: the input size and the 10 classes are fixed by the architecture."""

    def __init__(self, params: LeNet5.Params | None = None) -> None:
        super().__init__(params if params is not None else LeNet5.Params())
        self.c1 = torch.nn.Conv2d(1, 6, kernel_size=5)
        self.s2 = torch.nn.MaxPool2d(kernel_size=2, stride=2)
        self.c3 = torch.nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = torch.nn.MaxPool2d(kernel_size=2, stride=2)
        self.c5 = torch.nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = torch.nn.Linear(120, 84)
        self.output = torch.nn.Linear(84, NUM_CLASSES)
        self.input_definitions = {
            "images": DataDefinition((ANY, 1, 32, 32), "float32", "grey images, values in [0, 1]"),
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
        """The input and the feature maps of C1 and C3 (after ReLU) of sample ``index``, from a recorded forward."""
        if "C1" not in self.internals:
            return None
        from miprometheus.plotting import feature_maps_figure

        return feature_maps_figure(batch["images"][index], [(name, self.internals[name][index])
                                                            for name in ("C1", "C3")], f"{self.name}, sample {index}")

"""AlexNet: the single-tower network of Krizhevsky et al. 2012 (torchvision 0.2.2's layers), for images of 63 px up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.registry import register_model

#: (kernel, stride, padding) of the layers that shrink the image, in order (convolutions and max-pools).
SHRINKING_LAYERS = (("conv1", 11, 4, 2), ("pool1", 3, 2, 0), ("conv2", 5, 1, 2), ("pool2", 3, 2, 0),
                    ("conv3-5", 3, 1, 1), ("pool5", 3, 2, 0))
#: positions in ``features`` whose outputs (after the ReLU) are drawn by ``plot``.
RECORDED = {1: "conv1", 4: "conv2"}
#: the smallest height or width that leaves at least one pixel after the last pooling.
MIN_SIZE = 63


def feature_size(size: int) -> int:
    """Height (or width) of the last feature map for an input ``size``: floor((s - k + 2p) / stride) + 1 per layer."""
    for _, kernel, stride, padding in SHRINKING_LAYERS:
        size = (size - kernel + 2 * padding) // stride + 1
    return size


@register_model
class AlexNet(Model):
    """AlexNet (one tower): five convolutions and three linear layers, ``images`` [B, C, H, W] -> logits [B, classes].

    Layers as in torchvision 0.2.2: conv 3->64 11x11/4 (pad 2), ReLU, max-pool 3/2; conv 64->192 5x5 (pad 2), ReLU,
    max-pool 3/2; conv 192->384, 384->256, 256->256 3x3 (pad 1), ReLU each, max-pool 3/2; then dropout 0.5,
    linear 9216->4096, ReLU, dropout 0.5, linear 4096->4096, ReLU, linear 4096->classes. An adaptive average pool
    to 6x6 before the classifier (the original had none and needed ~224-px inputs) lets any image of 63 px or more
    in: at 64 px the last feature map is 1x1 and is spread over the 6x6 grid. Grey images (1 channel) are
    replicated to RGB inside the model. 57.0 M parameters for 10 classes.

    The original MI-Prometheus configs trained it with Adam at lr 0.01, which stays at chance from scratch;
    configs/vision/alexnet_mnist.yaml holds the recipe measured here (docs/RESULTS.md).
    """

    @dataclass
    class Params:
        """Parameters of AlexNet."""

        height: int = param(doc="image height (63 or more)", from_problem=True)
        width: int = param(doc="image width (63 or more)", from_problem=True)
        num_channels: int = param(doc="image channels: 3, or 1 (replicated to RGB)", from_problem=True)
        num_classes: int = param(doc="number of classes (size of the logits)", from_problem=True)
        dropout: float = param(0.5, "dropout probability before the first two linear layers", min=0, max=1)

    def __init__(self, params: AlexNet.Params) -> None:
        super().__init__(params)
        p = params
        if p.num_channels not in (1, 3):
            raise ConfigError(f"AlexNet takes RGB images (3 channels) or grey ones (1, replicated to RGB), "
                              f"got {p.num_channels} channels")
        if min(p.height, p.width) < MIN_SIZE:
            raise ConfigError(f"AlexNet needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels (its convolutions and "
                              f"pools shrink a smaller one to nothing), got {p.height}x{p.width}: set the problem's "
                              f"resize, e.g. resize: [64, 64]")
        relu = torch.nn.ReLU(inplace=True)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), relu, torch.nn.MaxPool2d(3, 2),
            torch.nn.Conv2d(64, 192, kernel_size=5, padding=2), relu, torch.nn.MaxPool2d(3, 2),
            torch.nn.Conv2d(192, 384, kernel_size=3, padding=1), relu,
            torch.nn.Conv2d(384, 256, kernel_size=3, padding=1), relu,
            torch.nn.Conv2d(256, 256, kernel_size=3, padding=1), relu, torch.nn.MaxPool2d(3, 2),
        )
        self.avgpool = torch.nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = torch.nn.Sequential(
            torch.nn.Dropout(p.dropout), torch.nn.Linear(256 * 6 * 6, 4096), relu,
            torch.nn.Dropout(p.dropout), torch.nn.Linear(4096, 4096), relu,
            torch.nn.Linear(4096, p.num_classes),
        )
        self.grey = p.num_channels == 1
        self.input_definitions = {
            "images": DataDefinition((ANY, p.num_channels, p.height, p.width), "float32", "images"),
        }
        self.output_definitions = {
            "predictions": DataDefinition((ANY, p.num_classes), "float32", "class logits"),
        }

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Class logits [B, num_classes] for ``batch["images"]`` [B, C, H, W]."""
        x = batch["images"]
        if self.grey:
            x = x.expand(-1, 3, -1, -1)  # grey -> RGB: the same plane in each channel (a view, no copy)
        for position, layer in enumerate(self.features):  # what nn.Sequential does, with two maps recorded
            x = layer(x)
            if self.recording and position in RECORDED:
                self.internals[RECORDED[position]] = x.detach()
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Sample ``index``: the input, its prediction and target, the first maps of conv1 and conv2 (after ReLU)."""
        if "conv1" not in self.internals:
            return None
        from miprometheus.models.vision.figures import classifier_figure

        return classifier_figure(self.name, batch, predictions, index,
                                 [(name, self.internals[name]) for name in ("conv1", "conv2")])

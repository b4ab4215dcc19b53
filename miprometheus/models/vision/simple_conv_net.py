"""SimpleConvNet: a LeNet-like classifier with two configurable convolutions (the original MI-Prometheus's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.registry import register_model


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution: floor((W - F + 2P) / S) + 1."""
    return (size - kernel + 2 * padding) // stride + 1


@register_model
class SimpleConvNet(Model):
    """Two conv -> max-pool -> ReLU stages, then linear 120 -> 84 -> num_classes: ``images`` -> logits.

    The ReLU comes after the pooling (as in the original). Image size, channels and classes come
    from the problem; with the defaults it has 61,706 parameters on 1x32x32 (MNIST resized) and
    62,006 on 3x32x32 (CIFAR-10), 10 classes.
    """

    @dataclass
    class Params:
        """Parameters of SimpleConvNet."""

        height: int = param(doc="image height", from_problem=True)
        width: int = param(doc="image width", from_problem=True)
        num_channels: int = param(doc="number of image channels", from_problem=True)
        num_classes: int = param(doc="number of classes (size of the logits)", from_problem=True)
        conv1_out_channels: int = param(6, "output channels of the first convolution")
        conv1_kernel: int = param(5, "kernel size of the first convolution")
        conv1_stride: int = param(1, "stride of the first convolution")
        conv1_padding: int = param(0, "zero padding of the first convolution")
        pool1_kernel: int = param(2, "kernel (and stride) of the first max-pool")
        conv2_out_channels: int = param(16, "output channels of the second convolution")
        conv2_kernel: int = param(5, "kernel size of the second convolution")
        conv2_stride: int = param(1, "stride of the second convolution")
        conv2_padding: int = param(0, "zero padding of the second convolution")
        pool2_kernel: int = param(2, "kernel (and stride) of the second max-pool")

    def __init__(self, params: SimpleConvNet.Params) -> None:
        super().__init__(params)
        p = params
        self.conv1 = torch.nn.Conv2d(p.num_channels, p.conv1_out_channels, p.conv1_kernel,
                                     stride=p.conv1_stride, padding=p.conv1_padding)
        self.pool1 = torch.nn.MaxPool2d(p.pool1_kernel)
        self.conv2 = torch.nn.Conv2d(p.conv1_out_channels, p.conv2_out_channels, p.conv2_kernel,
                                     stride=p.conv2_stride, padding=p.conv2_padding)
        self.pool2 = torch.nn.MaxPool2d(p.pool2_kernel)

        # Follow the spatial size through the layers so that a bad combination fails here, with
        # the stage named, rather than as a shape error in the first forward pass.
        height, width = p.height, p.width
        stages = [("conv1", lambda s: conv_output_size(s, p.conv1_kernel, p.conv1_stride, p.conv1_padding)),
                  ("pool1", lambda s: s // p.pool1_kernel),
                  ("conv2", lambda s: conv_output_size(s, p.conv2_kernel, p.conv2_stride, p.conv2_padding)),
                  ("pool2", lambda s: s // p.pool2_kernel)]
        for stage, shrink in stages:
            height, width = shrink(height), shrink(width)
            if height < 1 or width < 1:
                raise ConfigError(
                    f"SimpleConvNet: the image ({p.num_channels}x{p.height}x{p.width}) becomes {height}x{width} "
                    f"after {stage}; use smaller kernels or strides, more padding, or larger images")
        flat_size = p.conv2_out_channels * height * width

        self.linear1 = torch.nn.Linear(flat_size, 120)
        self.linear2 = torch.nn.Linear(120, 84)
        self.linear3 = torch.nn.Linear(84, p.num_classes)
        self.input_definitions = {
            "images": DataDefinition((ANY, p.num_channels, p.height, p.width), "float32", "images"),
        }
        self.output_definitions = {
            "predictions": DataDefinition((ANY, p.num_classes), "float32", "class logits"),
        }

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Class logits [B, num_classes] for ``batch["images"]`` [B, C, H, W]."""
        stage1 = torch.relu(self.pool1(self.conv1(batch["images"])))
        stage2 = torch.relu(self.pool2(self.conv2(stage1)))
        x = torch.relu(self.linear1(stage2.flatten(1)))
        x = torch.relu(self.linear2(x))
        if self.recording:
            self.internals["conv1"], self.internals["conv2"] = stage1.detach(), stage2.detach()
        return self.linear3(x)

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Sample ``index``: the input, its prediction and target, the maps after each conv -> pool -> ReLU stage."""
        if "conv1" not in self.internals:
            return None
        from miprometheus.models.vision.figures import classifier_figure

        return classifier_figure(self.name, batch, predictions, index,
                                 [(name, self.internals[name]) for name in ("conv1", "conv2")])

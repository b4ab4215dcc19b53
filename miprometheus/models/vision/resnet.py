"""ResNet20: the CIFAR residual network of He et al. 2016 (§4.2), the small-image baseline of today."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.registry import register_model

#: output channels of the three stages (§4.2: 16, 32, 64 filters on feature maps of 32, 16, 8 pixels).
STAGE_CHANNELS = (16, 32, 64)


class BasicBlock(torch.nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    Where the block halves the map and doubles the channels, the shortcut is option A of the paper:
    parameter-free, the input subsampled by 2 and zero-padded with the new channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out_channels)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A: the identity, subsampled by the stride, the added channels zero (half before, half after)."""
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:
            before = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@register_model
class ResNet20(Model):
    """ResNet-20 (He et al. 2016, §4.2): ``images`` [B, C, H, W] (32x32 in the paper) -> logits [B, num_classes].

    A 3x3 conv with 16 filters, BN, ReLU; three stages of ``blocks_per_stage`` basic blocks (two 3x3
    conv-BN layers each) with 16, 32 and 64 channels, the first block of stages 2 and 3 halving the
    map with stride 2; global average pooling and a linear layer. The depth is 6n+2 (n=3: 20 layers;
    n=5: ResNet-32, n=9: ResNet-56). Shortcuts are identities, zero-padded where the channels grow
    (option A: no parameters), so ResNet-20 has 269,722 parameters on 3 channels and 10 classes
    (0.27 M in the paper), 269,434 on 1 channel. Convolutions have Kaiming-normal initialisation.
    The paper's CIFAR-10 recipe: SGD momentum 0.9, lr 0.1 divided by 10 at 32k and 48k iterations,
    weight decay 1e-4, batch 128, 4-pixel padding + random crop + horizontal flip, per-channel
    normalisation; 8.75 % test error (91.25 % accuracy).
    """

    @dataclass
    class Params:
        """Parameters of ResNet20."""

        num_channels: int = param(doc="number of image channels", from_problem=True)
        num_classes: int = param(doc="number of classes (size of the logits)", from_problem=True)
        height: int = param(32, "image height (any size from 8 px works; the paper uses 32)", from_problem=True)
        width: int = param(32, "image width (any size from 8 px works; the paper uses 32)", from_problem=True)
        blocks_per_stage: int = param(3, "basic blocks per stage, n: depth 6n+2 (3: ResNet-20)", min=1)

    def __init__(self, params: ResNet20.Params) -> None:
        super().__init__(params)
        p = params
        if min(p.height, p.width) < 8:
            # Two stride-2 stages: a smaller image leaves the last stage a map of 1 pixel or less.
            raise ConfigError(f"ResNet20: images of {p.height}x{p.width} are too small: it needs at least 8x8 "
                              f"(the network halves them twice; the paper uses 32x32)")
        self.conv = torch.nn.Conv2d(p.num_channels, STAGE_CHANNELS[0], 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(STAGE_CHANNELS[0])
        stages = []
        in_channels = STAGE_CHANNELS[0]
        for index, channels in enumerate(STAGE_CHANNELS):
            blocks = []
            for block in range(p.blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
            stages.append(torch.nn.Sequential(*blocks))
        self.stages = torch.nn.ModuleList(stages)
        self.linear = torch.nn.Linear(STAGE_CHANNELS[-1], p.num_classes)
        for module in self.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        self.input_definitions = {
            "images": DataDefinition((ANY, p.num_channels, p.height, p.width), "float32", "images"),
        }
        self.output_definitions = {
            "predictions": DataDefinition((ANY, p.num_classes), "float32", "class logits"),
        }

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Class logits [B, num_classes] for ``batch["images"]`` [B, C, H, W]."""
        conv = torch.relu(self.bn(self.conv(batch["images"])))  # 16 x H x W
        stage1 = self.stages[0](conv)  # 16 x H x W
        stage2 = self.stages[1](stage1)  # 32 x H/2 x W/2
        stage3 = self.stages[2](stage2)  # 64 x H/4 x W/4
        if self.recording:
            self.internals["conv"], self.internals["stage1"] = conv.detach(), stage1.detach()
            self.internals["stage2"] = stage2.detach()
        return self.linear(stage3.mean(dim=(2, 3)))

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """The input, prediction and target, and the feature maps of the first conv, stage 1 and stage 2."""
        if "conv" not in self.internals:
            return None
        from miprometheus.models.vision.figures import classifier_figure

        return classifier_figure(self.name, batch, predictions, index,
                                 [(name, self.internals[name]) for name in ("conv", "stage1", "stage2")])

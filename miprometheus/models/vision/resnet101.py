"""ResNet-101 (He et al. 2016) as an image feature extractor, cut after layer1, layer2, layer3 or layer4.

The modules carry torchvision's names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, and inside each
bottleneck ``conv1``/``bn1``/``conv2``/``bn2``/``conv3``/``bn3``/``downsample.0``/``downsample.1``), so the
state-dict file of torchvision's ImageNet ``resnet101`` loads as it is (``resnet101-63fe2227.pth``, the
IMAGENET1K_V1 weights that torchvision 0.2.2 shipped as ``resnet101-5d3b4d8f.pth``, or the V2
``resnet101-cd907fc2.pth``). Like torchvision's, the bottleneck strides in its 3x3 convolution ("v1.5").

At 224 x 224 pixels the maps are 256 x 56 x 56 after layer1, 512 x 28 x 28 after layer2,
1024 x 14 x 14 after layer3 (the CLEVR features of Johnson et al. 2017 and MAC) and
2048 x 7 x 7 after layer4. The network is built for inference: :func:`feature_extractor` returns it in eval
mode with its parameters frozen; the caller runs it under ``torch.no_grad()``.

Weights are never downloaded: the user gives the file (``torch.load(weights_only=True)``, so a file cannot run
code). :func:`load_weights` checks it against the network and names what does not fit.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from miprometheus.errors import ConfigError, DataError

#: bottleneck blocks of the four stages of ResNet-101
BLOCKS = (3, 4, 23, 3)
#: output channels of each stage (4 x its bottleneck width)
STAGE_CHANNELS = {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
LAYERS = tuple(STAGE_CHANNELS)
#: total downsampling of the input after each stage (stem: /4)
STAGE_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
#: ImageNet per-channel mean and std of the pixels in [0, 1], which torchvision's weights were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: where the user finds the weights (never downloaded by the project)
WEIGHTS_HINT = ("torchvision's ImageNet resnet101 state dict, e.g. resnet101-63fe2227.pth from "
                "https://download.pytorch.org/models/ (torch.save(torchvision.models.resnet101(weights="
                "'IMAGENET1K_V1').state_dict(), file) writes the same)")


class Bottleneck(nn.Module):
    """1x1 conv (reduce to ``width``) -> 3x3 conv (stride) -> 1x1 conv (expand to 4 x width), each with BN,
    ReLU after the first two and after the sum with the shortcut (a strided 1x1 conv + BN where the shape changes)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet101(nn.Module):
    """The stem (7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2) and the stages up to ``last_layer``.

    ``[B, 3, H, W]`` (ImageNet-normalised) -> ``[B, STAGE_CHANNELS[last_layer], H / s, W / s]`` with
    ``s = STAGE_STRIDE[last_layer]`` (rounded up). No pooling or classifier: a feature map.
    """

    def __init__(self, last_layer: str = "layer3", zero_init_residual: bool = False) -> None:
        super().__init__()
        if last_layer not in LAYERS:
            raise ConfigError(f"ResNet-101: last_layer must be one of {', '.join(LAYERS)}, got {last_layer!r}")
        self.last_layer = last_layer
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (name, blocks) in enumerate(zip(LAYERS, BLOCKS)):
            width = 64 * 2 ** index
            stride = 1 if index == 0 else 2
            stage = [Bottleneck(channels, width, stride)]
            channels = width * Bottleneck.expansion
            stage += [Bottleneck(channels, width) for _ in range(blocks - 1)]
            self.add_module(name, nn.Sequential(*stage))
            if name == last_layer:
                break
        self.out_channels = channels
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's initialisation: Kaiming-normal (fan out) convolutions, BN weight 1 and bias 0; with
        ``zero_init_residual`` (torchvision's option of that name) each bottleneck's last BN weight is 0, so every
        block starts as its shortcut: without it, random eval-mode features grow with depth (max ~1e5 after
        layer3 at 224 px, beyond float16)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def stages(self) -> list[str]:
        """The names of the stages this network holds (layer1 up to ``last_layer``)."""
        return list(LAYERS[:LAYERS.index(self.last_layer) + 1])

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, height, width) of the features of a ``height`` x ``width`` image."""
        for _ in range(2):  # the stem's strided conv and max-pool: floor((d - 1) / 2) + 1 each
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        for _ in self.stages()[1:]:  # each later stage's strided 3x3 conv
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return self.out_channels, height, width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # 64 x H/4 x W/4
        for name in self.stages():
            x = getattr(self, name)(x)
        return x


# --- weights ----------------------------------------------------------------------------------------------
def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file (recorded with the features, so that they name the exact weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _full_network_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key of a whole torchvision ResNet-101 and its shape (built on the meta device: no memory)."""
    with torch.device("meta"):
        network = ResNet101("layer4")
    shapes = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    shapes.update({"fc.weight": (1000, 2048), "fc.bias": (1000,)})  # the ImageNet classifier, never used here
    return shapes


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a state dict, or a checkpoint holding one under ``state_dict``/``model``.

    Keys saved from ``nn.DataParallel`` (``module.`` prefix) are accepted. Read with ``weights_only=True``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ResNet-101 weights file not found: {path}. Give {WEIGHTS_HINT}; or set "
                          "random_weights: true (tests only: the features are then meaningless)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            KeyError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the ResNet-101 weights file {path}: {first} (a corrupt or truncated file, "
                        f"or not a PyTorch state dict; expected {WEIGHTS_HINT})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not data or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise DataError(f"{path} is not a state dict (a mapping of parameter names to tensors); expected "
                        f"{WEIGHTS_HINT}")
    if all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data)


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_weights(network: ResNet101, path: Path | str) -> dict[str, Any]:
    """Load a torchvision-format ResNet-101 weights file into ``network``; what was loaded and ignored.

    The keys of the stages beyond ``last_layer`` and of the classifier (``fc``) are ignored; every key of
    ``network`` must be in the file with its shape (``num_batches_tracked``, which files from before PyTorch
    0.4.1 lack, excepted). A key no ResNet-101 has, a missing key or a shape mismatch is a DataError naming them.
    """
    path = Path(path).expanduser()
    state = read_state_dict(path)
    wanted = network.state_dict()
    full = _full_network_shapes()
    unknown = sorted(k for k in state if k not in full)
    missing = sorted(k for k in wanted if k not in state and not k.endswith("num_batches_tracked"))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(wanted[k].shape)})"
                   for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape))
    if unknown or missing or wrong:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listed(missing)}")
        if unknown:
            problems.append(f"keys no ResNet-101 has: {_listed(unknown)}")
        if wrong:
            problems.append(f"wrong shapes: {_listed(wrong)}")
        raise DataError(f"{path} does not fit ResNet-101 (cut after {network.last_layer}): {'; '.join(problems)}. "
                        f"Expected {WEIGHTS_HINT}")
    loaded = {k: v for k, v in state.items() if k in wanted}
    for key, value in wanted.items():  # files from before PyTorch 0.4.1 have no batch counters
        if key not in loaded:
            loaded[key] = torch.zeros_like(value)
    network.load_state_dict(loaded, strict=True)
    ignored = sorted(k for k in state if k not in wanted)
    return {"loaded": len(loaded), "ignored": len(ignored)}


def feature_extractor(last_layer: str = "layer3", weights: Path | str | None = None,
                      random_seed: int | None = None) -> ResNet101:
    """A ResNet-101 cut after ``last_layer``, in eval mode, its parameters frozen: with the weights of the file
    ``weights``, or, when ``weights`` is None, random weights drawn from ``random_seed`` (tests only)."""
    if weights is None:
        if random_seed is None:
            raise ConfigError(f"ResNet-101 needs a weights file ({WEIGHTS_HINT}); random weights must be asked "
                              "for explicitly")
        state = torch.random.get_rng_state()
        torch.manual_seed(random_seed)  # the global RNG only for the init, and restored: nobody else's draws move
        try:
            network = ResNet101(last_layer, zero_init_residual=True)  # finite features, also in float16
        finally:
            torch.random.set_rng_state(state)
    else:
        network = ResNet101(last_layer)
        load_weights(network, weights)
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


__all__ = ["BLOCKS", "IMAGENET_MEAN", "IMAGENET_STD", "LAYERS", "STAGE_CHANNELS", "Bottleneck", "ResNet101",
           "feature_extractor", "file_sha256", "load_weights", "read_state_dict"]

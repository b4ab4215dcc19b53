"""Per-batch image transforms: datasets keep ``uint8`` pixels, batches are converted when they are made.

Keeping a split as ``uint8`` costs a quarter of a float copy, and resizing per batch costs memory
for one batch only: a 224-pixel AlexNet input of CIFAR-10 would need 60,000 x 3 x 224 x 224 floats
(36 GB) resized up front, 38 MB per batch of 64. Every function takes and returns a batch
``[B, C, H, W]``; none changes its input in place (the pixels are shared by every split).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: published mean and standard deviation of the MNIST training pixels (in [0, 1]).
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels (0..255) as float32 in [0, 1]; a float batch is returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a float batch to ``size`` = (height, width), antialiased, clamped to [0, 1].

    Each image is interpolated on its own, so a batch gives the same values as resizing a whole split.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(images - mean) / std`` per channel; one value each applies to every channel."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def grey_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """A one-channel batch replicated to three channels (for models made for colour images)."""
    if images.shape[1] != 1:
        raise ValueError(f"grey_to_rgb expects one channel, got {images.shape[1]}")
    return images.expand(-1, 3, -1, -1).contiguous()


def random_crop(images: torch.Tensor, size: Sequence[int], padding: int, generator: torch.Generator,
                fill: float = 0.0) -> torch.Tensor:
    """Training augmentation: each image padded by ``padding`` pixels (``fill``), then cropped at a random place.

    Offsets are drawn from ``generator`` (the problem's own, so a resumed run draws the same crops).
    """
    height, width = int(size[0]), int(size[1])
    padded = F.pad(images, (padding, padding, padding, padding), value=fill) if padding else images
    max_top, max_left = padded.shape[-2] - height, padded.shape[-1] - width
    if max_top < 0 or max_left < 0:
        raise ValueError(f"random_crop: a {height}x{width} crop does not fit images of "
                         f"{padded.shape[-2]}x{padded.shape[-1]} (after padding {padding})")
    count = images.shape[0]
    # Drawn on the generator's device: a CPU generator cannot draw on another (a CUDA default device).
    tops = torch.randint(0, max_top + 1, (count,), generator=generator, device=generator.device).tolist()
    lefts = torch.randint(0, max_left + 1, (count,), generator=generator, device=generator.device).tolist()
    return torch.stack([padded[i, :, t:t + height, left:left + width] for i, (t, left) in enumerate(zip(tops, lefts))])


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator, probability: float = 0.5) -> torch.Tensor:
    """Training augmentation: each image mirrored left-right with ``probability``, drawn from ``generator``."""
    flip = (torch.rand(images.shape[0], generator=generator, device=generator.device) < probability).to(images.device)
    if not bool(flip.any()):
        return images
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out


__all__ = ["MNIST_MEAN", "MNIST_STD", "grey_to_rgb", "normalize", "random_crop", "random_horizontal_flip",
           "resize", "to_float"]

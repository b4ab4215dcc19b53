"""The shared base of image classification problems: per-batch transforms, loss, statistics and plot.

A subclass loads its split as ``uint8`` pixels ``self.images`` [N, C, H, W] (shared by every split
reading the same file) and int64 ``self.targets`` [N], then calls :meth:`ImageProblem.setup_images`.
Each batch is converted when it is made (:meth:`ImageProblem.prepare_images`): float in [0, 1],
resize, grey -> RGB, training augmentation (random crop with padding, horizontal flip, drawn from
the problem's own generator), mean/std normalisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.params import MAX_IMAGE_SIDE, param
from miprometheus.problems.image_transforms import (
    grey_to_rgb,
    normalize,
    random_crop,
    random_horizontal_flip,
    resize,
    to_float,
)
from miprometheus.problems.problem import Batch, Problem, ProblemParams
from miprometheus.statistics import StatisticDefinition, mean_of


@dataclasses.dataclass(kw_only=True)
class ImageParams(ProblemParams):
    """Parameters shared by every image classification problem (transforms applied to each batch)."""

    resize: list[int] | None = param(None, "optional [height, width] to resize the images to (bilinear, "
                                           "antialiased, per batch)", min=1, max=MAX_IMAGE_SIDE)
    normalize: bool = param(False, "subtract the mean and divide by the std per channel (the dataset's published "
                                   "values unless mean/std are set)")
    mean: list[float] | float | None = param(None, "per-channel pixel mean (in [0, 1]) used by normalize; one "
                                                   "value applies to every channel; default: the published one")
    std: list[float] | float | None = param(None, "per-channel pixel standard deviation used by normalize; "
                                                  "default: the published one")
    grey_to_rgb: bool = param(False, "replicate a grey-scale image to 3 channels (num_channels becomes 3), for "
                                     "models made for colour images")
    random_crop_padding: int = param(0, "training augmentation: pad each image by this many pixels (zeros), then "
                                        "crop back to the output size at a random place (0 = off)", min=0)
    random_horizontal_flip: bool = param(False, "training augmentation: mirror each image left-right with "
                                                "probability 0.5")


class ImageProblem(Problem):
    """Base of image classification problems; subclasses load ``self.images``/``self.targets``, then setup_images."""

    Params = ImageParams
    #: published per-channel mean and std of the dataset's training pixels, used by ``normalize``.
    published_mean: tuple[float, ...] = ()
    published_std: tuple[float, ...] = ()

    images: torch.Tensor
    targets: torch.Tensor
    label_names: Sequence[str]

    def check_resize(self, value: Any) -> tuple[int, int] | None:
        """The ``resize`` parameter as (height, width), or None; ConfigError if it is not two positive integers."""
        if value is None:
            return None
        # Any sequence (a list from YAML, a tuple, an OmegaConf ListConfig), but not a string.
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
        valid = values is not None and len(values) == 2
        if not valid or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise ConfigError(f"problem {self.name}: resize must be [height, width] with two positive integers, "
                              f"got {value!r}")
        return int(values[0]), int(values[1])

    def _channel_values(self, key: str, value: Any, default: tuple[float, ...], channels: int) -> tuple[float, ...]:
        if value is None:
            values = tuple(default)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values = (float(value),)
        else:
            values = tuple(float(v) for v in value)
        if len(values) == 1 and channels > 1:
            values = values * channels
        if len(values) != channels:
            raise ConfigError(f"problem {self.name}: {key} needs 1 or {channels} values (one per channel), "
                              f"got {len(values)}")
        return values

    def check_normalization(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The (mean, std) per output channel used by ``normalize``, or None; ConfigError if inconsistent."""
        params = self.params
        if not params.normalize:
            if params.mean is not None or params.std is not None:
                raise ConfigError(f"problem {self.name}: mean/std are used only with normalize: true")
            return None
        mean = self._channel_values("mean", params.mean, self.published_mean, channels)
        std = self._channel_values("std", params.std, self.published_std, channels)
        if not all(s > 0 for s in std):
            raise ConfigError(f"problem {self.name}: std must be positive, got {list(std)}")
        return mean, std

    def setup_images(self, label_names: Sequence[str], description: str) -> None:
        """Check the transform parameters against the loaded pixels; set definitions and default values.

        ``description`` describes the images as the file holds them (e.g. "RGB images").
        """
        params = self.params
        self.label_names = list(label_names)
        self.num_classes = len(self.label_names)
        stored_channels = int(self.images.shape[1])
        if params.grey_to_rgb and stored_channels != 1:
            raise ConfigError(f"problem {self.name}: grey_to_rgb needs grey-scale images, these have "
                              f"{stored_channels} channels")
        if not isinstance(params.random_crop_padding, int):
            raise ConfigError(f"problem {self.name}: random_crop_padding must be an integer, got "
                              f"{params.random_crop_padding!r}")
        size = self.check_resize(params.resize)
        self.size = size if size is not None else tuple(int(s) for s in self.images.shape[-2:])
        self.channels = 3 if params.grey_to_rgb else stored_channels
        # A grey dataset's single published value applies to the replicated channels too.
        self.mean_std = self.check_normalization(self.channels)
        self._worker_generator: tuple[int, torch.Generator] | None = None
        height, width = self.size

        text = description + (" replicated to 3 channels" if params.grey_to_rgb else "") + " in [0, 1]"
        if self.mean_std:
            text += " minus the mean, divided by the std"
        self.output_definitions = {
            "images": DataDefinition((-1, self.channels, height, width), "float32", text),
            "targets": DataDefinition((-1,), "int64", f"class index 0..{self.num_classes - 1}"),
            "targets_label": DataDefinition((-1,), "list", "class name of each target"),
        }
        self.prediction_definitions = {"predictions": DataDefinition((-1, self.num_classes), "float32",
                                                                     "class logits")}
        self.statistic_definitions = {
            "acc": StatisticDefinition("mean", "fraction of images whose top class is the target"),
            "batch_size": StatisticDefinition("sum", "number of samples"),
        }
        self.default_values = {"num_classes": self.num_classes, "num_channels": self.channels,
                               "height": height, "width": width}

    # --- data -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        target = self.targets[index]
        return {"images": self.images[index], "targets": target, "targets_label": self.label_names[int(target)]}

    def collate_fn(self, samples: list[dict[str, Any]]) -> Batch:
        return {
            "images": self.prepare_images(torch.stack([s["images"] for s in samples])),
            "targets": torch.stack([s["targets"] for s in samples]),
            "targets_label": [s["targets_label"] for s in samples],
        }

    @property
    def augments(self) -> bool:
        """Whether batches are augmented (random crop or flip configured)."""
        return bool(self.params.random_crop_padding) or bool(self.params.random_horizontal_flip)

    def augmentation_generator(self) -> torch.Generator:
        """``self.generator``, or in a DataLoader worker one seeded from the worker's seed.

        Worker processes hold copies of the generator; without a reseed every worker would draw the
        same crops. The worker seed comes from the loader's private generator, so runs repeat.
        """
        info = get_worker_info()
        if info is None:
            return self.generator
        if self._worker_generator is None or self._worker_generator[0] != info.seed:
            self._worker_generator = (info.seed, torch.Generator().manual_seed(info.seed & 0xFFFF_FFFF_FFFF_FFFF))
        return self._worker_generator[1]

    def prepare_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """A batch of ``uint8`` pixels [B, C, H, W] as the model sees it.

        float in [0, 1] -> resize -> grey to RGB -> augmentation (crop, flip) -> normalisation.
        """
        images = resize(to_float(pixels), self.size)
        if self.params.grey_to_rgb:
            images = grey_to_rgb(images)
        if self.augments:
            generator = self.augmentation_generator()
            if self.params.random_crop_padding:
                images = random_crop(images, self.size, self.params.random_crop_padding, generator)
            if self.params.random_horizontal_flip:
                images = random_horizontal_flip(images, generator)
        if self.mean_std is not None:
            images = normalize(images, self.mean_std[0], self.mean_std[1])
        return images

    # --- loss and statistics --------------------------------------------------------------------
    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the class logits, averaged over the batch."""
        return F.cross_entropy(predictions, batch["targets"])

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float]:
        """``acc`` (fraction of argmax predictions equal to the target) and ``batch_size``."""
        targets = batch["targets"]
        correct = (predictions.detach().argmax(dim=1) == targets).sum()
        return {"acc": mean_of(correct, targets.shape[0]), "batch_size": float(targets.shape[0])}

    # --- visualisation ----------------------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Sample ``index``: the image, its target and the top-3 predicted classes with their probabilities."""
        from miprometheus.plotting import classification_figure

        target = self.label_names[int(batch["targets"][index])]
        probabilities = None if predictions is None else torch.softmax(predictions[index].detach().float(), dim=0)
        return classification_figure(self.display_image(batch["images"][index]), target, probabilities,
                                     self.label_names, f"{self.name}, sample {index}")

    def display_image(self, image: torch.Tensor) -> torch.Tensor:
        """An image of a batch back in [0, 1] for display (normalisation undone)."""
        if self.mean_std is None:
            return image
        mean = torch.tensor(self.mean_std[0], dtype=image.dtype).view(-1, 1, 1)
        std = torch.tensor(self.mean_std[1], dtype=image.dtype).view(-1, 1, 1)
        return (image * std + mean).clamp(0.0, 1.0)


__all__ = ["ImageParams", "ImageProblem"]

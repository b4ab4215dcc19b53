"""Sequential MNIST: classify a digit read one pixel (784 steps) or one row (28 steps) at a time.

Le, Jaitly, Hinton 2015 ("A simple way to initialize recurrent networks of rectified linear units") introduced
pixel-by-pixel MNIST and its permuted variant; row-by-row MNIST is the usual shorter benchmark. The images come
from the same IDX files as :class:`~miprometheus.problems.image_to_class.mnist.MNIST`, read by its functions and
shared with it in memory (one ``uint8`` copy per file in the process).

The permutation is drawn from ``permutation_seed`` alone (``dataset_seeding.dataset_generator``), never from the run's
seed or the global RNG: every split and every run of a config see the same order (the original drew it from the
global torch RNG, so train and test agreed only by luck). The training split's order is also saved with the
experiment (``assets.json``) and every other split checks that it uses the same.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError, DataError
from miprometheus.params import param
from miprometheus.problems.dataset_seeding import dataset_generator
from miprometheus.problems.image_to_class.mnist import LABEL_NAMES, MNIST, load_images, read_idx_labels
from miprometheus.problems.image_transforms import to_float
from miprometheus.problems.problem import Batch, Problem, ProblemParams
from miprometheus.problems.shared_arrays import shared_asset
from miprometheus.registry import register_problem
from miprometheus.statistics import Measure, StatisticDefinition, mean_of

SIDE = 28
PIXELS = SIDE * SIDE
PERMUTATIONS = ("none", "rows", "pixels")


def pixel_order(permutation: str, seed: int) -> torch.Tensor:
    """The raster index of the image pixel at each position of the sequence, int64 ``[784]``.

    ``none``: 0..783 (raster order); ``rows``: the rows in a random order, each row's pixels left to right;
    ``pixels``: a random order of all 784 pixels. The same ``seed`` gives the same order everywhere.
    """
    if permutation not in PERMUTATIONS:
        raise ConfigError(f"permutation must be one of {', '.join(PERMUTATIONS)}, got {permutation!r}")
    if permutation == "none":
        return torch.arange(PIXELS)
    generator = dataset_generator(seed, "permutation", permutation)
    if permutation == "rows":
        rows = torch.randperm(SIDE, generator=generator)
        return (rows.unsqueeze(1) * SIDE + torch.arange(SIDE)).reshape(-1)
    return torch.randperm(PIXELS, generator=generator)


class SequentialMNISTBase(Problem):
    """MNIST digits as sequences of ``T`` steps of ``I`` pixels (``T * I = 784``); the class at the last step.

    Batches hold ``sequences`` [B, T, I] float32 in [0, 1] (the image's pixels in the chosen order, ``I`` per
    step), ``mask`` [B, T] uint8 (1 on the last step only: the step that is scored), ``targets`` [B] int64 and
    ``targets_label``. Predictions are logits [B, T, 10] (one per step, as the recurrent models give them);
    the loss and ``acc`` use the masked step's.
    """

    #: number of pixels read at each step (1: pixel by pixel; 28: row by row)
    item_size: ClassVar[int] = 1

    @dataclasses.dataclass(kw_only=True)
    class Params(ProblemParams):
        """Parameters of the sequential MNIST problems."""

        data_folder: str = param(doc="folder holding the MNIST IDX files (itself, raw/ or MNIST/raw/); downloads "
                                     "go to <data_folder>/raw/", path=True)
        use_train_data: bool = param(True, "use the 60,000 training images (False: the 10,000 test images)")
        download: bool = param(True, "download missing files from the official mirrors (md5-verified)")
        permutation: Literal["none", "rows", "pixels"] = param(
            "none", "order of the pixels in the sequence: none (raster order), rows (the rows in a fixed random "
                    "order) or pixels (all 784 pixels in a fixed random order, then cut into steps)")
        permutation_seed: int = param(0, "seed of the permutation: the same order in every split and every run "
                                         "(independent of the run's seed)")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        if params.permutation not in PERMUTATIONS:
            raise ConfigError(f"problem {self.name}: permutation must be one of {', '.join(PERMUTATIONS)}, "
                              f"got {params.permutation!r}")
        if isinstance(params.permutation_seed, bool) or not isinstance(params.permutation_seed, int):
            raise ConfigError(f"problem {self.name}: permutation_seed must be an integer, "
                              f"got {params.permutation_seed!r}")
        self.root = Path(os.path.expanduser(str(params.data_folder)))
        split = "train" if params.use_train_data else "test"
        # MNIST's own search and download, and its loaders: the same cache entries, so one copy per file is
        # shared with MNIST problems of the same process.
        images_path, labels_path = MNIST._locate(self, split)
        self.images = shared_asset(images_path, load_images)
        self.targets = shared_asset(labels_path, read_idx_labels)
        if self.images.shape[0] != self.targets.shape[0]:
            raise DataError(f"MNIST files disagree: {images_path} holds {self.images.shape[0]} images but "
                            f"{labels_path} holds {self.targets.shape[0]} labels")
        if tuple(self.images.shape[-2:]) != (SIDE, SIDE):
            raise DataError(f"{self.name} needs 28x28 images; {images_path} holds "
                            f"{self.images.shape[-2]}x{self.images.shape[-1]} images")
        self.pixel_order = pixel_order(params.permutation, params.permutation_seed)
        self.steps = PIXELS // self.item_size

        steps, size = self.steps, self.item_size
        self.output_definitions = {
            "sequences": DataDefinition((-1, steps, size), "float32",
                                        f"the image's pixels in [0, 1], {size} per step, in the "
                                        f"{params.permutation} order"),
            "mask": DataDefinition((-1, steps), "uint8", "1 on the last step (the scored one), 0 elsewhere"),
            "targets": DataDefinition((-1,), "int64", "digit class 0..9"),
            "targets_label": DataDefinition((-1,), "list", "class name of each target, e.g. 'Seven'"),
        }
        self.prediction_definitions = {
            "predictions": DataDefinition((-1, steps, 10), "float32", "class logits at every step (the last is "
                                                                      "scored)"),
        }
        self.statistic_definitions = {
            "acc": StatisticDefinition("mean", "fraction of sequences whose top class at the last step is the "
                                               "target"),
            "batch_size": StatisticDefinition("sum", "number of samples"),
        }
        self.default_values = {"input_item_size": size, "output_item_size": 10, "num_classes": 10,
                               "max_sequence_length": steps}

    @property
    def permutation(self) -> list[int] | None:
        """The drawn permutation: the row order (rows), the pixel order (pixels), or None (no permutation).

        Position ``i`` of the sequence holds original row (or raster pixel) ``permutation[i]``.
        """
        if self.params.permutation == "none":
            return None
        if self.params.permutation == "rows":
            return (self.pixel_order[::SIDE] // SIDE).tolist()
        return self.pixel_order.tolist()

    # --- the order, saved with the experiment ---------------------------------------------------------
    def build_assets(self) -> dict[str, Any]:
        """The training split's pixel order (saved in ``assets.json``, checked by every other split)."""
        return {"permutation": self.params.permutation, "permutation_seed": int(self.params.permutation_seed),
                "pixel_order": self.pixel_order.tolist()}

    def use_assets(self, assets: dict[str, Any]) -> None:
        """Check that this split reads the pixels in the training split's order; DataError if not."""
        order = assets.get("pixel_order")
        if order is None:  # assets of another problem (a transfer run): nothing to compare
            return
        if list(order) != self.pixel_order.tolist():
            raise DataError(f"problem {self.name}: this split's pixel order (permutation "
                            f"{self.params.permutation}, permutation_seed {self.params.permutation_seed}) is not "
                            f"the training run's (permutation {assets.get('permutation')}, permutation_seed "
                            f"{assets.get('permutation_seed')}): set the same permutation and seed in every section")

    # --- data -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        target = self.targets[index]
        return {"images": self.images[index], "targets": target, "targets_label": LABEL_NAMES[int(target)]}

    def collate_fn(self, samples: list[dict[str, Any]]) -> Batch:
        pixels = torch.stack([s["images"] for s in samples])  # uint8 [B, 1, 28, 28]
        batch_size = pixels.shape[0]
        mask = torch.zeros(batch_size, self.steps, dtype=torch.uint8, device=pixels.device)
        mask[:, -1] = 1
        return {
            "sequences": self.to_sequences(pixels),
            "mask": mask,
            "targets": torch.stack([s["targets"] for s in samples]),
            "targets_label": [s["targets_label"] for s in samples],
        }

    def to_sequences(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, 28, 28] (uint8 or float) as the model sees them: float32 [B, T, I] in the sequence order."""
        flat = to_float(pixels).reshape(pixels.shape[0], PIXELS)
        return flat[:, self.pixel_order].reshape(pixels.shape[0], self.steps, self.item_size)

    def to_images(self, sequences: torch.Tensor) -> torch.Tensor:
        """Sequences [B, T, I] back to the images [B, 1, 28, 28] (the permutation undone)."""
        flat = sequences.reshape(sequences.shape[0], PIXELS)
        images = torch.empty_like(flat)
        images[:, self.pixel_order] = flat
        return images.reshape(sequences.shape[0], 1, SIDE, SIDE)

    # --- loss and statistics --------------------------------------------------------------------
    def scored_logits(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """The logits [B, 10] of each sample's masked step, taken from the predictions [B, T, 10]."""
        mask = batch["mask"]
        if predictions.dim() != 3 or predictions.shape[:2] != mask.shape:
            raise DataError(f"problem {self.name}: predictions must be [B, T, 10] with [B, T] = "
                            f"{list(mask.shape)}, got {list(predictions.shape)}")
        # collate_fn marks one step per sample; its index, found on the device, picks the row. A boolean index
        # (predictions[mask]) or a check of the mask would read it back to the host at every step of training.
        steps = mask.argmax(dim=1)
        return predictions[torch.arange(mask.shape[0], device=mask.device), steps]

    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the masked (last) step's logits, averaged over the batch."""
        return F.cross_entropy(self.scored_logits(batch, predictions), batch["targets"])

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """``acc`` (argmax of the masked step's logits equal to the target) and ``batch_size``."""
        targets = batch["targets"]
        correct = (self.scored_logits(batch, predictions.detach()).argmax(dim=1) == targets).sum()
        return {"acc": mean_of(correct, targets.shape[0]), "batch_size": float(targets.shape[0])}

    # --- visualisation ----------------------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Sample ``index``: the image rebuilt from its sequence, the sequence as the model reads it (the
        permuted order, 28 pixels per line), the target and the class probabilities at the scored step."""
        import numpy as np

        from miprometheus.plotting import new_figure, to_numpy

        sequence = batch["sequences"][index : index + 1].detach().float()
        image = to_numpy(self.to_images(sequence)[0, 0])
        seen = to_numpy(sequence.reshape(SIDE, SIDE))
        target = int(batch["targets"][index])
        figure = new_figure(10.0, 3.4)
        image_ax, seen_ax, bars_ax = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]})
        image_ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        image_ax.set_title(f"image, target: {LABEL_NAMES[target]}", fontsize=9)
        seen_ax.imshow(seen, cmap="gray", vmin=0.0, vmax=1.0)
        seen_ax.set_title(f"as read ({self.params.permutation} order),\n28 pixels per line, top first", fontsize=9)
        for ax in (image_ax, seen_ax):
            ax.set_xticks([])
            ax.set_yticks([])
        if predictions is None:
            bars_ax.set_axis_off()
            bars_ax.text(0.5, 0.5, "no predictions", ha="center", va="center")
        else:
            mask = batch["mask"][index].bool()
            logits = predictions[index].detach().float()[mask][0]
            probabilities = to_numpy(torch.softmax(logits, dim=0))
            colours = ["tab:green" if i == target else "tab:red" if i == int(np.argmax(probabilities))
                       else "tab:grey" for i in range(10)]
            bars_ax.bar(np.arange(10), probabilities, color=colours)
            bars_ax.set_xticks(np.arange(10), [str(i) for i in range(10)])
            bars_ax.set_ylim(0.0, 1.0)
            bars_ax.set_xlabel("class", fontsize=8)
            bars_ax.set_title("probabilities at the last step\n(green: target; red: a wrong top class)", fontsize=9)
        figure.suptitle(f"{self.name}, sample {index}", fontsize=10)
        return figure


@register_problem
class SequentialPixelMNIST(SequentialMNISTBase):
    """MNIST read pixel by pixel: 784 steps of 1 pixel (raster order, or permuted), the class at the last step.

    ``sequences`` [B, 784, 1] float32 in [0, 1], ``mask`` [B, 784] (1 on the last step), ``targets`` [B]; the
    model's predictions [B, 784, 10] are scored at the last step. ``permutation: pixels`` is the permuted
    pixel MNIST of Le et al. 2015. Long: 784 recurrent steps per sample.
    """

    item_size = 1


@register_problem
class SequentialRowMNIST(SequentialMNISTBase):
    """MNIST read row by row: 28 steps of 28 pixels, the class at the last step.

    ``sequences`` [B, 28, 28] float32 in [0, 1], ``mask`` [B, 28] (1 on the last step), ``targets`` [B]; the
    model's predictions [B, 28, 10] are scored at the last step. ``permutation: rows`` shuffles the row order
    (fixed by ``permutation_seed``); ``pixels`` shuffles all 784 pixels, then reads 28 of them per step.
    """

    item_size = SIDE


@register_problem
class PermutedSequentialRowMNIST(SequentialRowMNIST):
    """Row-by-row MNIST with the rows in a fixed random order (the original's PermutedSequentialRowMnist).

    SequentialRowMNIST with ``permutation: rows`` by default: 28 steps of 28 pixels, the rows in the order
    drawn from ``permutation_seed`` (the same in every split and run), each row's pixels left to right.
    """

    @dataclasses.dataclass(kw_only=True)
    class Params(SequentialRowMNIST.Params):
        """Parameters of the permuted row MNIST problem (permutation: rows by default)."""

        permutation: Literal["none", "rows", "pixels"] = param(
            "rows", "order of the pixels in the sequence: rows (default: the rows in a fixed random order), "
                    "pixels (all 784 pixels in a fixed random order) or none (raster order)")


__all__ = ["PermutedSequentialRowMNIST", "SequentialMNISTBase", "SequentialPixelMNIST", "SequentialRowMNIST",
           "pixel_order"]

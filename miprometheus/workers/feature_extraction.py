"""``mip extract-features CONFIG``: image features of a dataset's splits, pre-extracted by a ResNet-101, one file
per split (the format of :mod:`miprometheus.problems.image_text_to_class.clevr_features`).

The config (YAML, validated like every config: an unknown key is an error naming file:line and the nearest key)::

    dataset:   {problem: CLEVR, data_folder: ~/data/CLEVR_v1.0, splits: [train, val]}
    extractor: {weights: ~/data/resnet101-63fe2227.pth, last_layer: layer3, image_size: 224}
    output:    {folder: null, name: null, dtype: float16}
    batch_size: 64
    num_workers: 4
    device: cuda

Every PNG of ``<data_folder>/images/<split>/`` (sorted by name) is read with Pillow, converted to RGB, resized
to ``image_size`` x ``image_size`` with Pillow's bilinear filter (what torchvision's ``Resize`` did to the
original's PIL images), ImageNet-normalised and passed through the network in eval mode without gradients; the
maps are stored in ``output.dtype``. The files go to ``<data_folder>/features/<name>/<split>.npy`` (+ ``.json``),
where CLEVR's ``images: features`` looks by default (``feature_extractor: <name>``).

An extraction is atomic (a killed run never leaves a file that looks complete) and resumable: running the same
command again continues after the last rows saved (every :data:`CHECKPOINT_SECONDS`), and a split whose finished
file already holds exactly these features is left as it is (``output.overwrite: true`` extracts it again).
``extractor.random_weights: true`` replaces the weights file by a random network, for tests only: it must be
asked for, is announced loudly and is recorded in the sidecar.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from miprometheus.config import load_config
from miprometheus.config.loader import LoadedConfig
from miprometheus.config.schema import Errors, build
from miprometheus.errors import ConfigError, DataError
from miprometheus.layout import FEATURES_DIR
from miprometheus.params import param

logger = logging.getLogger("miprometheus.extract_features")

#: how often the rows written so far are made durable and recorded, so that a stopped run resumes after them
CHECKPOINT_SECONDS = 30.0
#: how often progress is reported during a split
REPORT_SECONDS = 30.0
#: extensions of the image files of a split's folder
IMAGE_SUFFIXES = (".png",)


@dataclass(kw_only=True)
class DatasetSection:
    """Which images to extract features of."""

    problem: Literal["CLEVR", "CLEVRCoGenT"] = param("CLEVR", "the dataset, named by its problem: CLEVR or "
                                                              "CLEVRCoGenT (its splits and layout)")
    data_folder: str = param(doc="the dataset folder, holding images/<split>/", path=True)
    splits: list[str] = param(factory=lambda: ["train", "val"], doc="the splits to extract (the images of "
                                                                    "images/<split>/)")


@dataclass
class ExtractorSection:
    """The network that makes the features."""

    architecture: Literal["resnet101"] = param("resnet101", "ResNet-101 (torchvision's module names)")
    weights: str | None = param(None, "torchvision-format ImageNet resnet101 state-dict file (e.g. "
                                      "resnet101-63fe2227.pth); read with weights_only=True", path=True)
    random_weights: bool = param(False, "a randomly initialised network instead of a weights file: for tests "
                                        "only, the features are meaningless")
    random_seed: int = param(0, "seed of the random weights")
    last_layer: Literal["layer1", "layer2", "layer3", "layer4"] = param(
        "layer3", "the last stage kept (the original's num_blocks: 4 means layer3: 1024 x 14 x 14 at 224 px)")
    image_size: int = param(224, "images are resized to image_size x image_size before the network", min=16)


@dataclass
class OutputSection:
    """Where the feature files go and how they are stored."""

    folder: str | None = param(None, "folder of the feature files; null: <data_folder>/features/<name>", path=True)
    name: str | None = param(None, "the features' name (CLEVR's feature_extractor); null: "
                                   "<architecture>_<last_layer>, plus _<image_size>px when not 224")
    dtype: Literal["float16", "float32"] = param("float16", "float16 (half the disk: 28 GB for CLEVR train at "
                                                            "layer3) or float32")
    overwrite: bool = param(False, "extract again even when a finished file holds exactly these features")


@dataclass(kw_only=True)
class ExtractionConfig:
    """A ``mip extract-features`` configuration."""

    description: str | None = param(None, "what this extraction is for")
    dataset: DatasetSection = param(doc="which images")
    extractor: ExtractorSection = param(factory=ExtractorSection, doc="which network")
    output: OutputSection = param(factory=OutputSection, doc="where the files go")
    batch_size: int = param(32, "images per forward pass", min=1)
    num_workers: int = param(4, "processes reading and resizing the images (0: the main process)", min=0)
    device: str = param("cpu", "cpu, cuda or cuda:N")


@dataclass
class SplitResult:
    """What the extraction of one split did."""

    split: str
    path: Path
    images: int
    shape: tuple[int, int, int]
    dtype: str
    status: Literal["written", "resumed", "up to date"]
    seconds: float = 0.0
    resumed_at: int = 0

    def describe(self) -> str:
        size = self.path.stat().st_size if self.path.is_file() else 0
        shown = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
        what = f"{self.images} image{'s' if self.images != 1 else ''}, {list(self.shape)} {self.dtype} ({shown})"
        if self.status == "up to date":
            return f"{self.path}: up to date ({what}); output.overwrite: true extracts it again"
        rate = (self.images - self.resumed_at) / self.seconds if self.seconds > 0 else float("nan")
        resumed = f", resumed at image {self.resumed_at}" if self.status == "resumed" else ""
        return f"wrote {self.path}: {what} in {self.seconds:.1f} s ({rate:.1f} images/s{resumed})"


# --- configuration ----------------------------------------------------------------------------------------
def feature_name(extractor: ExtractorSection) -> str:
    """The default name (folder) of the features: ``resnet101_layer3``, ``resnet101_layer3_64px``."""
    name = f"{extractor.architecture}_{extractor.last_layer}"
    return name if extractor.image_size == 224 else f"{name}_{extractor.image_size}px"


def output_folder(config: ExtractionConfig) -> Path:
    if config.output.folder:
        return Path(config.output.folder).expanduser()
    return Path(config.dataset.data_folder).expanduser() / FEATURES_DIR / (
        config.output.name or feature_name(config.extractor))


def validate_config(loaded: LoadedConfig) -> ExtractionConfig:
    """The typed configuration; every error of the tree at once, each with file:line (one ConfigError)."""
    from miprometheus import registry

    errors = Errors()
    config = build(ExtractionConfig, loaded.tree, "", loaded, errors)
    if isinstance(config, ExtractionConfig):
        splits = registry.get("problems", config.dataset.problem).SPLITS
        unknown = [s for s in config.dataset.splits if s not in splits]
        if not config.dataset.splits or unknown:
            errors.append(f"{loaded.where('dataset.splits')}'dataset.splits' must list splits of "
                          f"{config.dataset.problem} ({', '.join(splits)}), got {config.dataset.splits!r}")
        extractor = config.extractor
        if extractor.random_weights == (extractor.weights is not None):
            errors.append(f"{loaded.where('extractor')}set either 'extractor.weights' (a torchvision resnet101 "
                          "ImageNet state-dict file, e.g. resnet101-63fe2227.pth from https://download.pytorch.org/"
                          "models/) or 'extractor.random_weights: true' (tests only), "
                          + ("not both" if extractor.random_weights else "got neither"))
    if errors:
        raise ConfigError("invalid feature extraction configuration:\n  - " + "\n  - ".join(errors))
    return config


def load_extraction_config(config_paths: list[str], overrides: list[str]) -> ExtractionConfig:
    return validate_config(load_config(config_paths, overrides))


# --- reading images ---------------------------------------------------------------------------------------
class ImageFiles:
    """The images of a folder as ``uint8`` [3, size, size] (RGB, resized by Pillow's bilinear filter): a Dataset."""

    def __init__(self, folder: Path, names: list[str], size: int) -> None:
        self.folder, self.names, self.size = folder, names, size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        path = self.folder / self.names[index]
        try:
            with Image.open(path) as image:
                pixels = np.array(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read the image {path}: {exc}") from None
        return torch.from_numpy(pixels).permute(2, 0, 1)


def list_images(folder: Path) -> list[str]:
    """The image files of a split's folder, sorted by name (CLEVR's are numbered: file order = index order)."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (dataset.data_folder must hold images/<split>/)")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not names:
        raise DataError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")
    return names


# --- extraction -------------------------------------------------------------------------------------------
def extractor_record(config: ExtractionConfig, weights_sha256: str | None) -> dict[str, Any]:
    """How the features are made, as the sidecar records it."""
    from miprometheus.models.vision.resnet101 import IMAGENET_MEAN, IMAGENET_STD

    extractor = config.extractor
    return {"name": config.output.name or feature_name(extractor), "architecture": extractor.architecture,
            "last_layer": extractor.last_layer, "image_size": extractor.image_size,
            "resize": "Pillow bilinear to image_size x image_size, RGB", "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "weights_file": extractor.weights, "weights_sha256": weights_sha256,
            "random_weights": extractor.random_weights,
            "random_seed": extractor.random_seed if extractor.random_weights else None}


def extract_split(network: Any, config: ExtractionConfig, split: str, extractor: dict[str, Any], device: str,
                  report: Callable[[str], None]) -> SplitResult:
    """Extract (or resume, or leave as it is) one split's feature file."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from miprometheus.problems.image_text_to_class.clevr_features import FORMAT, VERSION, FeatureWriter

    folder = Path(config.dataset.data_folder).expanduser() / "images" / split
    names = list_images(folder)
    size = config.extractor.image_size
    channels, height, width = network.output_shape(size, size)
    meta = {"format": FORMAT, "version": VERSION, "dataset": config.dataset.problem, "split": split,
            "image_folder": str(folder.resolve()), "image_filenames": names,
            "shape": [len(names), channels, height, width], "dtype": config.output.dtype, "extractor": extractor}
    path = output_folder(config) / f"{split}.npy"
    writer = FeatureWriter(path, meta)
    result = SplitResult(split, path, len(names), (channels, height, width), config.output.dtype, "up to date")
    if not config.output.overwrite and writer.up_to_date():
        return result
    row = result.resumed_at = writer.start()
    result.status = "resumed" if row else "written"
    if row:
        report(f"{split}: resuming at image {row} of {len(names)}")
    mean = torch.tensor(extractor["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(extractor["std"], device=device).view(1, 3, 1, 1)
    loader = DataLoader(ImageFiles(folder, names[row:], size), batch_size=config.batch_size,
                        num_workers=config.num_workers, pin_memory=device.startswith("cuda"))
    started = last_checkpoint = last_report = time.monotonic()
    try:
        for pixels in loader:
            images = (pixels.to(device, non_blocking=True).float().div_(255.0) - mean) / std
            with torch.no_grad():
                features = network(images).float().cpu().numpy()
            values = features.astype(config.output.dtype)
            if not np.isfinite(values).all():
                raise _not_finite(features, config, split)
            writer.write(row, values)
            row += len(values)
            now = time.monotonic()
            if now - last_checkpoint >= CHECKPOINT_SECONDS:
                writer.checkpoint(row)
                last_checkpoint = now
            if now - last_report >= REPORT_SECONDS:
                report(f"{split}: {row}/{len(names)} images ({(row - result.resumed_at) / (now - started):.1f}/s)")
                last_report = now
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one to report
            writer.checkpoint(row)  # rows written so far are kept: the same command resumes after them
        raise
    result.seconds = time.monotonic() - started
    writer.finish({"created": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(result.seconds, 3)})
    return result


def _not_finite(features: Any, config: ExtractionConfig, split: str) -> Exception:
    import numpy as np

    if np.isfinite(features).all():  # finite in float32: too large for float16
        return ConfigError(f"{split}: features up to {float(np.abs(features).max()):.4g} do not fit float16 "
                           "(max 65504): set output.dtype: float32")
    return DataError(f"{split}: the network gives NaN or infinite features: the weights file "
                     f"{config.extractor.weights} holds non-finite values or does not belong to this network")


def random_weights_warning(config: ExtractionConfig) -> str:
    line = "!" * 100
    return (f"{line}\nWARNING: extractor.random_weights is true: the features come from a RANDOMLY initialised "
            f"ResNet-101 (seed {config.extractor.random_seed}).\nThey exist for tests; a model trained on them learns "
            "nothing about the images. Set extractor.weights for real features.\n"
            f"The sidecars record random_weights: true and CLEVR warns when it reads them.\n{line}")


def extract_features(config_paths: list[str], overrides: list[str], threads: int | None = None,
                     report: Callable[[str], None] = logger.info) -> list[SplitResult]:
    """Run an extraction config: validate it, build the network once, extract every split in turn."""
    import torch

    from miprometheus.models.vision.resnet101 import feature_extractor, file_sha256
    from miprometheus.workers.runs import check_device

    config = load_extraction_config(config_paths, overrides)
    device = check_device(config.device, threads)
    weights_sha256 = None
    if config.extractor.random_weights:
        print(random_weights_warning(config), file=sys.stderr)
        network = feature_extractor(config.extractor.last_layer, random_seed=config.extractor.random_seed)
    else:
        network = feature_extractor(config.extractor.last_layer, weights=config.extractor.weights)
        weights_sha256 = file_sha256(Path(config.extractor.weights).expanduser())
    network.to(torch.device(device))
    extractor = extractor_record(config, weights_sha256)
    results = []
    for split in config.dataset.splits:
        result = extract_split(network, config, split, extractor, device, report)
        report(result.describe())
        results.append(result)
    return results


__all__ = ["CHECKPOINT_SECONDS", "DatasetSection", "ExtractionConfig", "ExtractorSection", "OutputSection",
           "SplitResult", "extract_features", "extract_split", "feature_name", "load_extraction_config",
           "output_folder", "validate_config"]

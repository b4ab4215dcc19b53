"""Tests of the shared image transforms and of the image base class (MNIST and CIFAR10 share them)."""

from __future__ import annotations

import random

import pytest
import torch

from miprometheus.checkpoint import load_checkpoint
from miprometheus.errors import ConfigError
from miprometheus.problems.image_to_class.mnist import MNIST
from miprometheus.problems.image_transforms import (
    grey_to_rgb,
    normalize,
    random_crop,
    random_horizontal_flip,
    resize,
    to_float,
)
from miprometheus.statistics import read_csv
from tests.conftest import experiment_dirs, run_mip
from tests.problems.image_to_class.test_cifar import write10
from tests.problems.image_to_class.test_mnist import fixture_images, write_split
from tests.workers.test_resume import kill_after_rows


def batch(problem) -> torch.Tensor:
    return problem.collate_fn([problem[i] for i in range(len(problem))])["images"]


def mnist(root, **overrides) -> MNIST:
    values = {"batch_size": 4, "data_folder": str(root), "download": False, "use_train_data": False}
    values.update(overrides)
    return MNIST(MNIST.Params(**values))


# --- the functions --------------------------------------------------------------------------------------
def test_functions_keep_their_input_and_do_what_they_say():
    pixels = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    images = to_float(pixels)
    assert images.dtype == torch.float32 and float(images.max()) == pytest.approx(31 / 255)
    assert torch.equal(resize(images, (4, 4)), images)
    assert resize(images, (8, 6)).shape == (2, 1, 8, 6)
    rgb = grey_to_rgb(images)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], images[:, 0]) for c in range(3))
    assert torch.allclose(normalize(rgb, (0.5, 0.0, 1.0), (0.5, 1.0, 2.0))[:, 2], (images[:, 0] - 1.0) / 2.0)
    generator = torch.Generator().manual_seed(0)
    crops = random_crop(images, (4, 4), 2, generator)
    assert crops.shape == images.shape
    flipped = random_horizontal_flip(images, torch.Generator().manual_seed(0), probability=1.0)
    assert torch.equal(flipped, images.flip(-1))
    assert torch.equal(random_horizontal_flip(images, generator, probability=0.0), images)
    assert torch.equal(pixels, torch.arange(32, dtype=torch.uint8).view(2, 1, 4, 4))  # inputs untouched


def test_random_crop_shifts_the_image_inside_a_zero_border():
    image = torch.ones(64, 1, 5, 5)
    crops = random_crop(image, (5, 5), 2, torch.Generator().manual_seed(1))
    # Each crop is the image shifted by at most 2 pixels: ones where the image lies, zeros elsewhere.
    for crop in crops:
        rows, cols = crop[0].sum(1), crop[0].sum(0)
        assert int(rows.gt(0).sum()) >= 3 and int(cols.gt(0).sum()) >= 3
    assert len({tuple(c.flatten().tolist()) for c in crops}) > 5  # the offsets vary


# --- the base class on MNIST ------------------------------------------------------------------------------
def test_mnist_grey_to_rgb_replicates_the_channel(tmp_path):
    write_split(tmp_path, False, 4, compressed=False)
    problem = mnist(tmp_path, grey_to_rgb=True, resize=[32, 32])
    images = batch(problem)
    assert images.shape == (4, 3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert torch.equal(images[:, :1], batch(mnist(tmp_path, resize=[32, 32])))
    assert problem.default_values["num_channels"] == 3 and problem.output_definitions["images"].shape[1] == 3
    normalised = batch(mnist(tmp_path, grey_to_rgb=True, normalize=True))
    assert torch.allclose(normalised, (batch(mnist(tmp_path, grey_to_rgb=True)) - 0.1307) / 0.3081, atol=1e-6)


def test_mnist_augmentation_order_resize_then_crop_then_normalize(tmp_path):
    write_split(tmp_path, False, 4, compressed=False)
    problem = mnist(tmp_path, resize=[32, 32], random_crop_padding=3, normalize=True)
    problem.seed(0)
    images = batch(problem)
    assert images.shape == (4, 1, 32, 32)  # cropped back to the resized size
    # The padding is black before normalisation: it shows as (0 - mean) / std.
    assert torch.isclose(images.min(), torch.tensor((0.0 - 0.1307) / 0.3081), atol=1e-6)
    flips = mnist(tmp_path, random_horizontal_flip=True)
    flips.seed(3)
    flipped, plain = batch(flips), fixture_images(4).unsqueeze(1).float() / 255
    assert all(torch.equal(f, p) or torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain))
    assert any(torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain))


@pytest.mark.parametrize("values, message", [
    ({"random_crop_padding": -1}, "random_crop_padding"),
    ({"mean": 0.5}, "normalize: true"),
    ({"normalize": True, "std": 0.0}, "std must be positive"),
])
def test_bad_transform_parameters_are_config_errors(tmp_path, values, message):
    write_split(tmp_path, False, 2, compressed=False)
    with pytest.raises(ConfigError, match=message):
        mnist(tmp_path, **values)


# --- exact resume with augmentation, through the CLI ---------------------------------------------------------
@pytest.mark.slow
def test_augmented_training_resumes_exactly(tmp_path):
    write10(tmp_path / "data")
    config = tmp_path / "config.yaml"
    problem = f"name: CIFAR10, data_folder: {tmp_path / 'data'}, download: false"
    config.write_text(f"""
training:
  problem: {{{problem}, batch_size: 2, random_crop_padding: 4, random_horizontal_flip: true, normalize: true}}
  optimizer: {{name: SGD, lr: 0.01, momentum: 0.9}}
  terminal_conditions: {{epoch_limit: 6}}
  checkpoint_interval: 3
  seed: 4
model: {{name: LeNet5}}
""")
    run_mip("train", config, "--expdir", tmp_path / "whole", check=True)
    whole = experiment_dirs(tmp_path / "whole")[0]
    killed = kill_after_rows(config, tmp_path / "killed", random.Random().randint(6, 24))
    resumed = run_mip("train", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr

    def rows(folder):
        return [{k: v for k, v in r.items() if k != "time"} for r in read_csv(folder / "training_statistics.csv")]

    assert rows(killed) == rows(whole) and len(rows(whole)) == 36
    a, b = (load_checkpoint(f / "models" / "model_last.pt")["model"] for f in (whole, killed))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_augmentation_outside_training_is_refused_by_mip_check(tmp_path, capsys):
    from miprometheus.cli import main

    write_split(tmp_path / "data", False, 8, compressed=False)
    problem = f"name: MNIST, data_folder: {tmp_path / 'data'}, use_train_data: false, download: false"
    config = tmp_path / "config.yaml"
    text = f"""
training:
  problem: {{{problem}, random_crop_padding: 2}}
  optimizer: {{name: SGD, lr: 0.01}}
  terminal_conditions: {{episode_limit: 2}}
validation:
  problem: {{{problem}, VALIDATION_EXTRA}}
model: {{name: SimpleConvNet}}
"""
    config.write_text(text.replace("VALIDATION_EXTRA", "random_horizontal_flip: false"))
    assert main(["check", str(config), "--quiet"]) == 0, capsys.readouterr().err
    config.write_text(text.replace("VALIDATION_EXTRA", "random_horizontal_flip: true"))
    assert main(["check", str(config), "--quiet"]) == 2
    assert "validation.problem.random_horizontal_flip' is training augmentation" in capsys.readouterr().err

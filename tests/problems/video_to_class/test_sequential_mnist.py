"""Tests of sequential and permuted MNIST (Le, Jaitly, Hinton 2015): layout, permutations, masked scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from miprometheus.data import check_values
from miprometheus.errors import ConfigError, DataError
from miprometheus.problems.image_to_class.mnist import MNIST
from miprometheus.problems.video_to_class.sequential_mnist import (
    PermutedSequentialRowMNIST,
    SequentialPixelMNIST,
    SequentialRowMNIST,
    pixel_order,
)
from miprometheus.registry import get_problem
from tests.conftest import CONFIGS, SHARED_MNIST
from tests.problems.image_to_class.test_mnist import fixture_images, fixture_labels, write_split

SEQUENCE_CONFIGS = sorted(p for p in (CONFIGS / "vision").glob("*.yaml")
                          if ("row_mnist" in p.name or "pixel_mnist" in p.name) and not p.name.startswith("default_"))


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_split(tmp_path / "raw", train=False, count=6, compressed=True)
    write_split(tmp_path / "raw", train=True, count=4, compressed=False)
    return tmp_path


def make(cls: type, root: Path, **overrides):
    values = {"batch_size": 3, "data_folder": str(root), "download": False, "use_train_data": False}
    values.update(overrides)
    return cls(cls.Params(**values))


def accuracy(problem, batch: dict, predictions: torch.Tensor) -> float:
    acc = problem.statistics(batch, predictions)["acc"]
    return float(acc.total / acc.count)


def whole(problem) -> dict:
    return problem.collate_fn([problem[i] for i in range(len(problem))])


# --- layout ---------------------------------------------------------------------------------------
def test_row_sequences_are_the_image_rows_in_order(root):
    batch = whole(make(SequentialRowMNIST, root))
    images = fixture_images(6).float() / 255
    assert batch["sequences"].shape == (6, 28, 28) and batch["sequences"].dtype == torch.float32
    assert torch.equal(batch["sequences"], images)  # step t is row t, pixels left to right
    assert torch.equal(batch["targets"], fixture_labels(6).long())
    assert batch["targets_label"][0] == ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight",
                                         "Nine")[int(fixture_labels(6)[0])]


def test_pixel_sequences_are_the_raster_order(root):
    batch = whole(make(SequentialPixelMNIST, root))
    images = fixture_images(6).float() / 255
    assert batch["sequences"].shape == (6, 784, 1)
    assert torch.equal(batch["sequences"][:, :, 0], images.reshape(6, 784))
    assert torch.equal(batch["sequences"][2, 28 * 5 + 7, 0], images[2, 5, 7])


def test_mask_marks_only_the_last_step(root):
    for cls, steps in ((SequentialRowMNIST, 28), (SequentialPixelMNIST, 784)):
        mask = whole(make(cls, root))["mask"]
        assert mask.shape == (6, steps)
        assert mask[:, -1].eq(1).all() and mask[:, :-1].eq(0).all()


def test_permuted_rows_follow_the_exposed_row_order(root):
    problem = make(PermutedSequentialRowMNIST, root)
    assert problem.params.permutation == "rows"  # the default of the original's name
    order = problem.permutation
    assert sorted(order) == list(range(28)) and order != list(range(28))
    images = fixture_images(6).float() / 255
    sequences = whole(problem)["sequences"]
    for i, row in enumerate(order):
        assert torch.equal(sequences[:, i], images[:, row])  # step i is original row order[i], unchanged inside


def test_permuted_pixels_are_a_true_permutation_laid_out_as_the_sequence(root):
    for cls, size in ((SequentialRowMNIST, 28), (SequentialPixelMNIST, 1)):
        problem = make(cls, root, permutation="pixels", permutation_seed=5)
        order = problem.permutation
        assert sorted(order) == list(range(784)) and order != list(range(784))
        flat = fixture_images(6).float().reshape(6, 784) / 255
        sequences = whole(problem)["sequences"]
        assert sequences.shape == (6, 784 // size, size)
        assert torch.equal(sequences.reshape(6, 784), flat[:, order])
        # the permutation is undone exactly: the plot's image is the original one
        assert torch.equal(problem.to_images(sequences), flat.view(6, 1, 28, 28))


def test_rows_permutation_of_the_pixel_variant_moves_whole_rows(root):
    problem = make(SequentialPixelMNIST, root, permutation="rows")
    rows = problem.permutation
    assert len(rows) == 28 and sorted(rows) == list(range(28))
    images = fixture_images(6).float() / 255
    sequences = whole(problem)["sequences"][:, :, 0].reshape(6, 28, 28)
    assert torch.equal(sequences, images[:, rows])


def test_permutation_is_the_same_in_every_split_and_run_and_changes_with_the_seed(root):
    torch.manual_seed(1)
    test_split = make(SequentialRowMNIST, root, permutation="pixels", permutation_seed=3)
    torch.manual_seed(2)  # the global RNG and the run seed play no part
    train_split = make(SequentialRowMNIST, root, permutation="pixels", permutation_seed=3, use_train_data=True)
    train_split.seed(12345)
    assert test_split.permutation == train_split.permutation
    assert test_split.pixel_order.tolist() == pixel_order("pixels", 3).tolist()
    other = make(SequentialRowMNIST, root, permutation="pixels", permutation_seed=4)
    assert other.permutation != test_split.permutation
    assert pixel_order("rows", 0).tolist() != pixel_order("rows", 1).tolist()
    # a fixed value, so that a change of the derivation (which would silently change the benchmark) is seen
    assert pixel_order("rows", 0).tolist() == make(PermutedSequentialRowMNIST, root).pixel_order.tolist()


def test_the_training_order_is_saved_and_checked_by_the_other_splits(root):
    training = make(SequentialRowMNIST, root, permutation="rows", permutation_seed=7)
    assets = training.build_assets()
    assert assets["permutation_seed"] == 7 and len(assets["pixel_order"]) == 784
    make(SequentialRowMNIST, root, permutation="rows", permutation_seed=7).use_assets(assets)
    with pytest.raises(DataError, match="permutation_seed 8"):
        make(SequentialRowMNIST, root, permutation="rows", permutation_seed=8).use_assets(assets)


def test_images_are_shared_with_mnist(root):
    sequential = make(SequentialRowMNIST, root)
    plain = MNIST(MNIST.Params(batch_size=2, data_folder=str(root), download=False, use_train_data=False))
    assert sequential.images is plain.images and sequential.targets is plain.targets


def test_batches_match_the_definitions_and_default_values(root):
    for cls, steps, size in ((SequentialRowMNIST, 28, 28), (SequentialPixelMNIST, 784, 1)):
        problem = make(cls, root)
        batch = problem.collate_fn([problem[i] for i in range(3)])
        check_values(f"problem {problem.name}", batch, problem.output_definitions)
        assert problem.default_values == {"input_item_size": size, "output_item_size": 10, "num_classes": 10,
                                          "max_sequence_length": steps}
        assert float(batch["sequences"].min()) >= 0.0 and float(batch["sequences"].max()) <= 1.0


def test_bad_parameters_are_config_errors(root):
    with pytest.raises(ConfigError, match="permutation"):
        make(SequentialRowMNIST, root, permutation="columns")
    with pytest.raises(ConfigError, match="permutation_seed"):
        make(SequentialRowMNIST, root, permutation_seed="zero")
    with pytest.raises(DataError, match="not found"):
        make(SequentialRowMNIST, root / "empty")


def test_registry_finds_the_three_problems():
    assert get_problem("SequentialPixelMNIST") is SequentialPixelMNIST
    assert get_problem("SequentialRowMNIST") is SequentialRowMNIST
    assert get_problem("PermutedSequentialRowMNIST") is PermutedSequentialRowMNIST


# --- loss and accuracy on the masked step ---------------------------------------------------------
def test_loss_and_acc_use_only_the_masked_step(root):
    problem = make(SequentialRowMNIST, root)
    batch = whole(problem)
    targets = batch["targets"]
    wrong = (targets + 1) % 10
    predictions = torch.zeros(6, 28, 10)
    predictions[torch.arange(6), :, wrong] = 10.0    # wrong at every step ...
    predictions[:, -1] = 0.0
    predictions[torch.arange(6), -1, targets] = 10.0  # ... except the last one
    assert accuracy(problem, batch, predictions) == 1.0
    assert float(problem.loss(batch, predictions)) < 1e-3
    flipped = predictions.flip(1)  # right everywhere but at the last step
    assert accuracy(problem, batch, flipped) == 0.0
    assert float(problem.loss(batch, flipped)) > 5.0


def test_predictions_of_the_wrong_shape_are_refused(root):
    problem = make(SequentialRowMNIST, root)
    batch = whole(problem)
    with pytest.raises(DataError, match=r"\[B, T, 10\]"):
        problem.loss(batch, torch.zeros(6, 10))


# --- plot, models, configs --------------------------------------------------------------------------
def test_plot_shows_the_image_the_order_read_and_the_probabilities(root):
    from matplotlib.figure import Figure

    problem = make(SequentialRowMNIST, root, permutation="pixels")
    batch = whole(problem)
    figure = problem.plot(batch, 1, torch.randn(6, 28, 10))
    assert isinstance(figure, Figure) and len(figure.axes) == 3
    shown = figure.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(shown.data, dtype=torch.float32), fixture_images(6)[1].float() / 255)
    assert len(figure.axes[2].patches) == 10
    assert problem.plot(batch, 0) is not None


@pytest.mark.parametrize("model_name", ["LSTM", "GRU", "ThalNet", "NTM"])
def test_recurrent_models_take_the_batches_unchanged(root, model_name):
    from miprometheus.registry import get_model

    problem = make(PermutedSequentialRowMNIST, root)
    model_cls = get_model(model_name)
    model = model_cls(model_cls.Params(input_item_size=28, output_item_size=10))
    batch = whole(problem)
    predictions = model({"sequences": batch["sequences"]})
    check_values("predictions", {"predictions": predictions}, problem.prediction_definitions)
    problem.loss(batch, predictions).backward()


@pytest.mark.slow
def test_lstm_overfits_32_row_mnist_digits():
    if not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
    from miprometheus.models.recurrent.lstm import LSTM

    torch.manual_seed(0)
    problem = make(PermutedSequentialRowMNIST, SHARED_MNIST)
    batch = problem.collate_fn([problem[i] for i in range(32)])
    model = LSTM(LSTM.Params(input_item_size=28, output_item_size=10, hidden_size=64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        loss = problem.loss(batch, model({"sequences": batch["sequences"]}))
        loss.backward()
        optimizer.step()
        if float(loss.detach()) < 0.02:
            break
    assert accuracy(problem, batch, model({"sequences": batch["sequences"]})) == 1.0


@pytest.mark.parametrize("path", SEQUENCE_CONFIGS, ids=lambda p: p.name)
def test_mip_check_accepts_every_sequence_config(path: Path, capsys, blank_mnist):
    from miprometheus.cli import main

    assert main(["check", str(path), f"training.problem.data_folder={blank_mnist}", "--quiet"]) == 0, \
        capsys.readouterr().err


def test_a_section_with_another_permutation_seed_is_refused_by_mip_check(capsys, blank_mnist):
    from miprometheus.cli import main

    config = CONFIGS / "vision" / "lstm_permuted_row_mnist.yaml"
    assert main(["check", str(config), f"training.problem.data_folder={blank_mnist}",
                 "validation.problem.permutation_seed=3", "--quiet"]) == 2
    assert "permutation_seed 3" in capsys.readouterr().err

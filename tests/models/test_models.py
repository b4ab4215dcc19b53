"""Tests of the built-in models: declared shapes, parameter counts, registration, and real learning."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from miprometheus import catalogue, discovery, registry
from miprometheus.data import ANY, DataDefinition, check_values
from miprometheus.errors import ConfigError
from miprometheus.models.recurrent.lstm import LSTM
from miprometheus.models.vision.lenet5 import LeNet5
from miprometheus.models.vision.simple_conv_net import SimpleConvNet

torch.set_num_threads(2)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sample_input(definition: DataDefinition, batch: int = 3, any_size: int = 7) -> torch.Tensor:
    """A random tensor that fits a definition: ``batch`` for the first dimension, ``any_size`` for other free ones."""
    shape = [batch] + [any_size if d == ANY else d for d in definition.shape[1:]]
    return torch.rand(shape, dtype=getattr(torch, definition.dtype))


def lstm(**overrides: object) -> LSTM:
    values = {"input_item_size": 10, "output_item_size": 8} | overrides
    return LSTM(LSTM.Params(**values))


def simple_conv_net(channels: int = 1, size: int = 32, classes: int = 10, **overrides: object) -> SimpleConvNet:
    return SimpleConvNet(SimpleConvNet.Params(height=size, width=size, num_channels=channels,
                                              num_classes=classes, **overrides))


MODELS = {
    "LSTM": lambda: lstm(hidden_size=16, num_layers=2),
    "LeNet5": lambda: LeNet5(LeNet5.Params()),
    "SimpleConvNet-1x32x32": lambda: simple_conv_net(),
    "SimpleConvNet-3x28x20": lambda: SimpleConvNet(SimpleConvNet.Params(height=28, width=20, num_channels=3,
                                                                         num_classes=5)),
}


# --- declared data definitions -------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_output_matches_output_definitions(name: str) -> None:
    model = MODELS[name]()
    batch = {key: sample_input(d) for key, d in model.input_definitions.items()}
    check_values(f"{name} input", batch, model.input_definitions)
    predictions = model(batch)
    check_values(f"{name} output", {"predictions": predictions}, model.output_definitions)
    assert predictions.shape[0] == 3


def test_lstm_emits_one_output_per_step_for_any_length() -> None:
    model = lstm(hidden_size=8)
    for steps in (1, 5, 23):
        out = model({"sequences": torch.rand(2, steps, 10)})
        assert out.shape == (2, steps, 8) and out.dtype == torch.float32


def test_lstm_is_causal_and_starts_from_zero_state() -> None:
    model = lstm(hidden_size=8, num_layers=2)
    x = torch.rand(2, 6, 10)
    full = model({"sequences": x})
    changed = x.clone()
    changed[:, 4:] = torch.rand(2, 2, 10)
    # Outputs before the change depend only on earlier inputs.
    torch.testing.assert_close(model({"sequences": changed})[:, :4], full[:, :4])
    # The first output depends on the first input only: a zero initial state, no learned one.
    h0 = torch.zeros(2, 2, 8)
    explicit, _ = model.lstm(x, (h0, h0.clone()))
    torch.testing.assert_close(model.output(explicit), full)


def test_lstm_declares_problem_supplied_params() -> None:
    fields = {f.name: f for f in dataclasses.fields(LSTM.Params)}
    assert fields["input_item_size"].metadata["from_problem"]
    assert fields["output_item_size"].metadata["from_problem"]
    assert not fields["hidden_size"].metadata["from_problem"]
    assert (LSTM.Params(1, 1).hidden_size, LSTM.Params(1, 1).num_layers, LSTM.Params(1, 1).dropout) == (256, 1, 0.0)
    simple = {f.name for f in dataclasses.fields(SimpleConvNet.Params) if f.metadata["from_problem"]}
    assert simple == {"height", "width", "num_channels", "num_classes"}


@pytest.mark.parametrize("name", ["LSTM", "LeNet5", "SimpleConvNet"])
def test_models_are_registered_and_found_from_source(name: str) -> None:
    assert name in discovery.builtin_index("models")
    assert issubclass(registry.get_model(name), torch.nn.Module)
    info = catalogue.describe("models", name)
    assert info.doc
    assert all(p.doc for p in info.params)


# --- parameter counts ----------------------------------------------------------------------------
def test_lenet5_parameter_count() -> None:
    assert n_params(LeNet5(LeNet5.Params())) == 61_706


def test_simple_conv_net_parameter_counts() -> None:
    assert n_params(simple_conv_net(channels=1)) == 61_706  # MNIST resized to 32x32
    assert n_params(simple_conv_net(channels=3)) == 62_006  # CIFAR-10


@pytest.mark.parametrize("layers", [1, 3])
def test_lstm_parameter_count(layers: int) -> None:
    i, h, o = 10, 32, 8
    per_layer = lambda inp: 4 * (inp * h + h * h + 2 * h)  # noqa: E731 - four gates, two biases each (torch)
    expected = per_layer(i) + (layers - 1) * per_layer(h) + h * o + o
    assert n_params(lstm(hidden_size=h, num_layers=layers)) == expected


# --- configuration errors ------------------------------------------------------------------------
def test_simple_conv_net_rejects_images_that_vanish() -> None:
    with pytest.raises(ConfigError, match="after conv2"):
        simple_conv_net(size=12)  # 12 -> 8 -> 4 -> 0
    with pytest.raises(ConfigError, match="after pool1"):
        simple_conv_net(size=32, conv1_kernel=32)  # 32 -> 1 -> 0


def test_simple_conv_net_configurable_layers_follow_the_size_formula() -> None:
    model = simple_conv_net(size=28, conv1_out_channels=4, conv1_kernel=3, conv1_padding=1,
                            conv2_out_channels=5, conv2_kernel=3, conv2_stride=2, pool2_kernel=1)
    # 28 -> conv(3, p1) 28 -> pool 14 -> conv(3, s2) 6 -> pool(1) 6: flatten 5 * 6 * 6
    assert model.linear1.in_features == 5 * 6 * 6
    assert model({"images": torch.rand(2, 1, 28, 28)}).shape == (2, 10)


# --- eval mode -----------------------------------------------------------------------------------
def test_lstm_dropout_is_active_in_training_and_off_in_eval() -> None:
    torch.manual_seed(0)
    model = lstm(hidden_size=32, num_layers=2, dropout=0.5)
    batch = {"sequences": torch.rand(4, 5, 10)}
    model.train()
    assert not torch.equal(model(batch), model(batch))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), model(batch))


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_mode_is_deterministic(name: str) -> None:
    model = MODELS[name]().eval()
    batch = {key: sample_input(d) for key, d in model.input_definitions.items()}
    with torch.no_grad():
        assert torch.equal(model(batch), model(batch))


# --- learning ------------------------------------------------------------------------------------
def overfit_images(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Train on one fixed batch with Adam; return the train accuracy (stops early at 100 %)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = model({"images": images})
        if (logits.argmax(1) == labels).all():
            break
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()
    with torch.no_grad():
        return (model({"images": images}).argmax(1) == labels).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LeNet5", "SimpleConvNet"])
def test_vision_model_overfits_random_labels(name: str) -> None:
    """Memorising 32 random images with random labels needs every layer to pass gradients correctly."""
    torch.manual_seed(0)
    model = LeNet5(LeNet5.Params()) if name == "LeNet5" else simple_conv_net()
    images = torch.rand(32, 1, 32, 32)
    labels = torch.randint(0, 10, (32,))
    assert overfit_images(model, images, labels, steps=400) == 1.0


def copy_batch(batch: int, length: int, data_bits: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Serial-recall inputs [B, 2L+2, 2+D], targets [B, 2L+2, D] and mask [B, 2L+2, 1] (control bits first)."""
    steps = 2 * length + 2
    bits = torch.randint(0, 2, (batch, length, data_bits)).float()
    inputs = torch.zeros(batch, steps, 2 + data_bits)
    inputs[:, 0, 0] = 1.0  # store marker
    inputs[:, 1:length + 1, 2:] = bits
    inputs[:, length + 1, 1] = 1.0  # recall marker
    targets = torch.zeros(batch, steps, data_bits)
    targets[:, length + 2:] = bits
    mask = torch.zeros(batch, steps, 1)
    mask[:, length + 2:] = 1.0
    return inputs, targets, mask


@pytest.mark.slow
def test_lstm_learns_to_copy_a_fixed_batch() -> None:
    torch.manual_seed(0)
    inputs, targets, mask = copy_batch(batch=16, length=4)
    model = lstm(hidden_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def masked_loss() -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model({"sequences": inputs}), targets,
                                                                   reduction="none")
        return (bce * mask).sum() / (mask.sum() * targets.shape[-1])

    initial = masked_loss().item()
    assert initial > 0.6  # chance is ln 2
    for _ in range(300):
        optimizer.zero_grad()
        loss = masked_loss()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model({"sequences": inputs})
        accuracy = (((logits > 0).float() == targets).float() * mask).sum() / (mask.sum() * targets.shape[-1])
        assert masked_loss().item() < 0.05
    assert accuracy.item() == 1.0

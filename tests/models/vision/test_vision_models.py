"""AlexNet, ResNet-20 and LeNet5 on colour images: sizes, parameter counts, input rules, plots, real learning."""

from __future__ import annotations

import pytest
import torch

from miprometheus.data import check_values
from miprometheus.errors import ConfigError
from miprometheus.models.vision.alexnet import MIN_SIZE, AlexNet, feature_size
from miprometheus.models.vision.lenet5 import LeNet5
from miprometheus.models.vision.resnet import ResNet20
from miprometheus.models.vision.simple_conv_net import SimpleConvNet


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def alexnet(size: int = 64, channels: int = 3, classes: int = 10) -> AlexNet:
    return AlexNet(AlexNet.Params(height=size, width=size, num_channels=channels, num_classes=classes))


def resnet(size: int = 32, channels: int = 3, classes: int = 10, blocks: int = 3) -> ResNet20:
    return ResNet20(ResNet20.Params(height=size, width=size, num_channels=channels, num_classes=classes,
                                    blocks_per_stage=blocks))


# --- parameter counts -------------------------------------------------------------------------------
def test_alexnet_parameter_count_is_torchvisions_with_ten_classes():
    # torchvision's AlexNet has 61,100,840 parameters with 1000 classes; the last layer shrinks to 10.
    assert n_params(alexnet(classes=1000)) == 61_100_840
    assert n_params(alexnet()) == 61_100_840 - 990 * 4096 - 990 == 57_044_810


def test_resnet20_has_the_papers_0_27_million_parameters():
    # 16 + 2x3 blocks at 16, 32, 64 channels (3x3 convolutions without bias, BatchNorm), a 64 -> 10 linear:
    convs = 3 * 16 * 9 + sum(2 * 3 * c * c * 9 for c in (16, 32, 64)) - (32 * 32 * 9 - 16 * 32 * 9) \
        - (64 * 64 * 9 - 32 * 64 * 9)  # the first conv of stages 2 and 3 takes half the channels in
    batch_norms = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    assert n_params(resnet()) == convs + batch_norms + 64 * 10 + 10 == 269_722
    assert n_params(resnet(channels=1)) == 269_722 - 2 * 16 * 9  # the stem sees one channel
    assert n_params(resnet(blocks=5)) > n_params(resnet())  # ResNet-32


def test_lenet5_takes_colour_images():
    assert n_params(LeNet5(LeNet5.Params(num_channels=1))) == 61_706
    model = LeNet5(LeNet5.Params(num_channels=3))
    assert n_params(model) == 62_006
    assert model({"images": torch.rand(2, 3, 32, 32)}).shape == (2, 10)


# --- input sizes and channels ---------------------------------------------------------------------------
def test_alexnet_works_from_63_pixels_and_names_the_minimum_below():
    assert MIN_SIZE == 63 and feature_size(63) == 1 and feature_size(62) == 0 and feature_size(224) == 6
    for size in (63, 64, 100):
        model = alexnet(size)
        out = model({"images": torch.rand(2, 3, size, size)})
        check_values("AlexNet output", {"predictions": out}, model.output_definitions)
    with pytest.raises(ConfigError, match="at least 63x63"):
        AlexNet(AlexNet.Params(height=62, width=200, num_channels=3, num_classes=10))
    with pytest.raises(ConfigError, match="channels"):
        alexnet(channels=2)


def test_alexnet_replicates_grey_images_to_rgb():
    torch.manual_seed(0)
    grey, colour = alexnet(channels=1).eval(), alexnet(channels=3).eval()
    colour.load_state_dict(grey.state_dict())  # the same weights: conv1 always takes RGB
    images = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(grey({"images": images}), colour({"images": images.expand(-1, 3, -1, -1)}))
    assert grey.input_definitions["images"].shape[1] == 1


def test_resnet20_halves_the_size_twice_with_parameter_free_shortcuts():
    model = resnet(channels=1).eval()
    model.recording = True
    out = model({"images": torch.rand(3, 1, 32, 32)})
    assert out.shape == (3, 10)
    assert model.internals["conv"].shape == (3, 16, 32, 32)
    assert model.internals["stage1"].shape == (3, 16, 32, 32) and model.internals["stage2"].shape == (3, 32, 16, 16)
    block = model.stages[1][0]
    x = torch.rand(2, 16, 8, 8)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 32, 4, 4)
    torch.testing.assert_close(shortcut[:, 8:24], x[:, :, ::2, ::2])  # the input, zero-padded on both sides
    assert float(shortcut[:, :8].abs().sum()) == 0.0 and float(shortcut[:, 24:].abs().sum()) == 0.0
    with pytest.raises(ConfigError, match="at least 8x8"):
        resnet(size=7)


def test_recording_does_not_change_the_logits():
    for model, images in ((alexnet(channels=1), torch.rand(2, 1, 64, 64)), (resnet(), torch.rand(2, 3, 32, 32))):
        model.eval()
        plain = model({"images": images})
        model.recording = True
        recorded = model({"images": images})
        torch.testing.assert_close(plain, recorded)
        assert model.internals


# --- plots ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, images, layers", [
    (lambda: alexnet(channels=1), torch.rand(2, 1, 64, 64), 2),
    (lambda: resnet(), torch.rand(2, 3, 32, 32) * 2 - 1, 3),  # normalised pixels are shown too
    (lambda: LeNet5(), torch.rand(2, 1, 32, 32), 2),
    (lambda: SimpleConvNet(SimpleConvNet.Params(height=32, width=32, num_channels=3, num_classes=10)),
     torch.rand(2, 3, 32, 32), 2),
])
def test_each_model_draws_input_prediction_target_and_first_feature_maps(build, images, layers):
    model = build().eval()
    batch = {"images": images, "targets": torch.tensor([3, 7]), "targets_label": ["cat", "horse"]}
    assert model.plot(batch, model(batch), 1) is None  # nothing recorded
    model.recording = True
    predictions = model({"images": images})
    figure = model.plot(batch, predictions, 1)
    title = figure._suptitle.get_text()
    assert "sample 1" in title and "target 7 'horse'" in title
    assert f"predicted {int(predictions[1].argmax())}" in title
    # the input and at most 16 maps per layer
    assert 1 + layers <= len(figure.axes) <= 1 + 16 * layers


# --- learning -------------------------------------------------------------------------------------------
def _overfit(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int, lr: float,
             momentum: float = 0.9) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model({"images": images}), targets)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return float((model({"images": images}).argmax(1) == targets).float().mean())


@pytest.mark.slow
def test_resnet20_overfits_a_small_batch():
    torch.manual_seed(0)
    images, targets = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    assert _overfit(resnet(), images, targets, steps=40, lr=0.05) == 1.0


@pytest.mark.slow
def test_alexnet_overfits_a_small_batch():
    torch.manual_seed(0)
    model = AlexNet(AlexNet.Params(height=64, width=64, num_channels=1, num_classes=4, dropout=0.0))
    targets = torch.arange(8) % 4
    images = torch.rand(8, 1, 64, 64) * 0.3
    for i, target in enumerate(targets.tolist()):  # a bright quadrant per class, on noise that differs per image
        top, left = 32 * (target // 2), 32 * (target % 2)
        images[i, :, top:top + 32, left:left + 32] += 0.7
    assert _overfit(model, images, targets, steps=30, lr=0.01) == 1.0

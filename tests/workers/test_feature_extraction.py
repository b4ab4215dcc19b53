"""ResNet-101, `mip extract-features` and the feature files CLEVR reads with `images: features`.

Random weights on 2-3 fixture images; small images (32-64 px) except one check of the 224-pixel shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from miprometheus.cli import main
from miprometheus.errors import ConfigError, DataError
from miprometheus.models.vision.resnet101 import STAGE_CHANNELS, ResNet101, feature_extractor, load_weights
from miprometheus.problems.image_text_to_class import clevr_features
from miprometheus.problems.image_text_to_class.clevr import CLEVR, CLEVRCoGenT
from miprometheus.problems.image_text_to_class.clevr_features import read_features, sidecar_path
from miprometheus.workers import feature_extraction
from miprometheus.workers.feature_extraction import extract_features
from tests.clevr_fixtures import TINY_FEATURES, write_clevr, write_clevr_with_features
from tests.conftest import CONFIGS, run_mip

SMALL = (96, 64)


def write_config(folder: Path, data_folder: Path, extra: str = "", name: str = "extract.yaml",
                 batch_size: int = 2) -> Path:
    path = folder / name
    path.write_text(f"dataset: {{problem: CLEVR, data_folder: {data_folder}, splits: [train, val]}}\n"
                    f"extractor: {{random_weights: true, image_size: 32}}\nbatch_size: {batch_size}\n"
                    "num_workers: 0\n" + extra)
    return path


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    """A CLEVR fixture with the random-weight layer3 features of train and val at 32 px."""
    return write_clevr_with_features(tmp_path_factory.mktemp("extracted") / "CLEVR_v1.0", SMALL)[0]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_clevr(tmp_path / "CLEVR_v1.0", SMALL)


def features_problem(folder: Path, split: str = "train", **values) -> CLEVR:
    return CLEVR(CLEVR.Params(data_folder=str(folder), split=split, images="features",
                              feature_extractor=TINY_FEATURES, **values))


# --- the network ---------------------------------------------------------------------------------------------
def test_resnet101_has_torchvision_names_sizes_and_feature_shapes():
    with torch.device("meta"):
        whole = ResNet101("layer4")
    # torchvision's resnet101 has 44,549,160 parameters, 2,049,000 of them in the 1000-class fc layer
    assert sum(p.numel() for p in whole.parameters()) + 2048 * 1000 + 1000 == 44_549_160
    keys = set(whole.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean",
            "layer3.22.conv3.weight", "layer3.22.bn3.num_batches_tracked", "layer4.2.bn2.bias"} <= keys
    assert not any(k.startswith(("layer3.23", "layer4.3", "fc")) for k in keys)
    assert [len(getattr(whole, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    with pytest.raises(ConfigError, match="last_layer"):
        ResNet101("layer5")
    for layer in ("layer1", "layer2", "layer3"):
        network = feature_extractor(layer, random_seed=0)
        assert not network.training and not any(p.requires_grad for p in network.parameters())
        with torch.no_grad():
            out = network(torch.rand(1, 3, 40, 56))
        assert out.shape[1:] == network.output_shape(40, 56) and out.shape[1] == STAGE_CHANNELS[layer]
        assert torch.isfinite(out).all()
    assert network.output_shape(224, 224) == (1024, 14, 14)


def test_a_torchvision_format_weights_file_loads_and_later_stages_are_ignored(tmp_path):
    source = ResNet101("layer2")
    state = source.state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)  # a whole network's classifier: ignored
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # before PyTorch 0.4.1
    torch.save(old_style, tmp_path / "resnet101.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    for name in ("resnet101.pth", "wrapped.pth"):
        network = ResNet101("layer1")
        info = load_weights(network, tmp_path / name)
        assert torch.equal(network.layer1[2].conv3.weight, source.layer1[2].conv3.weight)
        assert torch.equal(network.bn1.running_mean, source.bn1.running_mean)
        assert info["ignored"] > 0  # layer2 and fc


def test_bad_weights_files_are_data_errors_naming_what_does_not_fit(tmp_path):
    state = ResNet101("layer1").state_dict()
    state["layer1.0.convX.weight"] = state.pop("layer1.0.conv1.weight")
    state["bn1.weight"] = torch.ones(32)
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(DataError) as info:
        load_weights(ResNet101("layer1"), tmp_path / "renamed.pth")
    message = str(info.value)
    assert "missing keys: layer1.0.conv1.weight" in message and "layer1.0.convX.weight" in message
    assert "bn1.weight (32,) (expected (64,))" in message
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 not a zip file at all")
    with pytest.raises(DataError, match="cannot read the ResNet-101 weights file"):
        load_weights(ResNet101("layer1"), tmp_path / "corrupt.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(DataError, match="not a state dict"):
        load_weights(ResNet101("layer1"), tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="weights file not found"):
        load_weights(ResNet101("layer1"), tmp_path / "absent.pth")


def test_a_weights_file_with_wrong_keys_is_exit_code_2_naming_the_keys(tmp_path, data, capsys):
    state = ResNet101("layer1").state_dict()
    state["layer1.2.bn9.weight"] = state.pop("layer1.2.bn3.weight")
    torch.save(state, tmp_path / "wrong.pth")
    config = write_config(tmp_path, data)
    code = main(["extract-features", str(config), "extractor.random_weights=false", "extractor.last_layer=layer1",
                 f"extractor.weights={tmp_path / 'wrong.pth'}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "layer1.2.bn3.weight" in err and "layer1.2.bn9.weight" in err and "Traceback" not in err
    assert not (data / "features").exists()


# --- the configuration --------------------------------------------------------------------------------------
def test_the_config_is_validated_with_file_lines_and_random_weights_must_be_asked_for(tmp_path, data):
    def error(text: str, overrides: list[str] | None = None) -> str:
        path = tmp_path / "cfg.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            feature_extraction.load_extraction_config([str(path)], overrides or [])
        return str(info.value)

    base = f"dataset: {{data_folder: {data}}}\n"
    message = error(base)
    assert "extractor.weights" in message and "random_weights" in message and "got neither" in message
    assert "not both" in error(base + "extractor: {random_weights: true, weights: w.pth}\n")
    message = error(base + "extractor:\n  random_weights: true\n  last_layr: layer2\n")
    assert "cfg.yaml:4" in message and "Did you mean 'extractor.last_layer'" in message
    assert "'dataset.splits' must list splits of CLEVR" in error(base + "extractor: {random_weights: true}\n",
                                                                   ["dataset.splits=[trainA]"])
    assert "'batch_size' must be at least 1" in error(base + "extractor: {random_weights: true}\nbatch_size: 0\n")
    config = feature_extraction.load_extraction_config(
        [str(write_config(tmp_path, Path("rel/CLEVR"), name="rel.yaml"))], ["extractor.image_size=224"])
    assert Path(config.dataset.data_folder) == tmp_path / "rel" / "CLEVR"  # relative to the config file
    assert feature_extraction.output_folder(config) == tmp_path / "rel" / "CLEVR" / "features" / "resnet101_layer3"


def test_the_shipped_extraction_config_is_valid():
    config = feature_extraction.load_extraction_config([str(CONFIGS / "vqa" / "extract_features_clevr.yaml")], [])
    assert config.extractor.last_layer == "layer3" and config.extractor.image_size == 224
    assert not config.extractor.random_weights and config.extractor.weights.endswith("resnet101-63fe2227.pth")
    assert feature_extraction.feature_name(config.extractor) == CLEVR.Params(data_folder="unused").feature_extractor


# --- extraction ---------------------------------------------------------------------------------------------
def test_extraction_at_224_pixels_gives_1024_x_14_x_14_per_image(tmp_path, data, capsys):
    config = write_config(tmp_path, data, "output: {dtype: float32}\n")
    code = main(["extract-features", str(config), "dataset.splits=[train]", "extractor.image_size=224",
                 "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    path = data / "features" / "resnet101_layer3" / "train.npy"
    assert f"wrote {path}: 2 images, [1024, 14, 14] float32" in out
    assert "WARNING: extractor.random_weights is true" in err  # loud
    features = read_features(path)
    assert features.array.shape == (2, 1024, 14, 14) and features.array.dtype == np.float32
    assert features.image_filenames == ["CLEVR_train_000000.png", "CLEVR_train_000001.png"]
    extractor = features.extractor
    assert extractor["random_weights"] is True and extractor["weights_sha256"] is None
    assert extractor["last_layer"] == "layer3" and extractor["image_size"] == 224 and extractor["std"][0] == 0.229
    assert not np.array_equal(features.array[0], features.array[1])
    network = feature_extractor("layer3", random_seed=0)  # the file holds what the network gives
    from PIL import Image
    image = Image.open(data / "images" / "train" / "CLEVR_train_000001.png").convert("RGB").resize((224, 224),
                                                                                                  Image.BILINEAR)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean, std = torch.tensor(extractor["mean"]).view(1, 3, 1, 1), torch.tensor(extractor["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = network((pixels - mean) / std)[0].numpy()
    np.testing.assert_allclose(features.array[1], expected, rtol=1e-4, atol=1e-5)


def test_clevr_reads_the_features_as_batches(extracted, caplog):
    train = features_problem(extracted)
    assert "RANDOM weights" in caplog.text  # said whenever such features are read
    assets = train.build_assets()
    train.use_assets(assets)
    features = read_features(extracted / "features" / TINY_FEATURES / "train.npy")
    batch = train.collate_fn([0, 2, 3])
    assert batch["images"].shape == (3, 1024, 2, 2) and batch["images"].dtype == torch.float32
    assert torch.equal(batch["images"][0], torch.from_numpy(features.array[0].astype(np.float32)))
    assert torch.equal(batch["images"][1], batch["images"][2])  # questions 2 and 3 ask about image 1
    assert {k: train.default_values[k] for k in ("num_channels", "height", "width", "feature_size")} == \
        {"num_channels": 1024, "height": 2, "width": 2, "feature_size": 1024}
    assert train.output_definitions["images"].shape == (-1, 1024, 2, 2)
    assert assets["image_features"]["random_weights"] is True and assets["image_features"]["shape"] == [1024, 2, 2]
    val = features_problem(extracted, "val")
    val.use_assets(assets)
    assert val.collate_fn([0, 1])["images"].shape == (2, 1024, 2, 2)
    assert val.display_image(val.collate_fn([0]), 0).shape == (3, 64, 96)  # the PNG, for figures


def test_features_made_otherwise_than_the_training_splits_are_refused(extracted, tmp_path):
    config = write_config(tmp_path, extracted, f"output: {{folder: {tmp_path / 'other'}}}\n")
    extract_features([str(config)], ["dataset.splits=[val]", "extractor.random_seed=5"], report=lambda line: None)
    assets = features_problem(extracted).build_assets()
    val = features_problem(extracted, "val", features_file=str(tmp_path / "other" / "val.npy"))
    with pytest.raises(DataError, match="random_seed: 5 vs 0"):
        val.use_assets(assets)


def test_a_finished_split_is_left_alone_and_overwrite_extracts_it_again(extracted, tmp_path):
    config = write_config(tmp_path, extracted)
    results = extract_features([str(config)], [], report=lambda line: None)
    assert [r.status for r in results] == ["up to date", "up to date"]
    results = extract_features([str(config)], ["output.overwrite=true", "dataset.splits=[val]"],
                               report=lambda line: None)
    assert [r.status for r in results] == ["written"]


def test_a_stopped_extraction_leaves_no_complete_file_and_resumes(data, tmp_path, monkeypatch):
    config = write_config(tmp_path, data, batch_size=1)
    real_write = clevr_features.FeatureWriter.write
    calls = []

    def stopped_after_one(self, row, values):
        calls.append(row)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(self, row, values)

    monkeypatch.setattr(clevr_features.FeatureWriter, "write", stopped_after_one)
    with pytest.raises(KeyboardInterrupt):
        extract_features([str(config)], ["dataset.splits=[train]"], report=lambda line: None)
    path = data / "features" / TINY_FEATURES / "train.npy"
    assert not path.exists() and not sidecar_path(path).exists()  # nothing that looks complete
    assert json.loads(clevr_features.progress_path(path).read_text())["rows_done"] == 1
    with pytest.raises(DataError, match="not finished"):
        features_problem(data)

    monkeypatch.setattr(clevr_features.FeatureWriter, "write", real_write)
    lines: list[str] = []
    [result] = extract_features([str(config)], ["dataset.splits=[train]"], report=lines.append)
    assert result.status == "resumed" and result.resumed_at == 1 and "resuming at image 1 of 2" in lines[0]
    assert not clevr_features.partial_path(path).exists() and not clevr_features.progress_path(path).exists()
    resumed = np.array(read_features(path).array)
    extract_features([str(config)], ["dataset.splits=[train]", f"output.folder={tmp_path / 'once'}"],
                     report=lambda line: None)
    assert np.array_equal(resumed, read_features(tmp_path / "once" / "train.npy").array)  # as if never stopped


# --- damaged feature files ----------------------------------------------------------------------------------
@pytest.fixture
def damaged(extracted, tmp_path) -> Path:
    """A copy of the extracted fixture, to damage."""
    copy = tmp_path / "CLEVR_v1.0"
    shutil.copytree(extracted, copy)
    return copy


def _edit_sidecar(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    ("truncated", "corrupt or truncated"),
    ("shape", "but its sidecar"),
    ("dtype", "but its sidecar"),
    ("no sidecar", "has no sidecar"),
    ("marker", "not a feature sidecar"),
    ("bad json", r"train.json:\d+:\d+: the feature sidecar is not valid JSON"),
    ("wrong split", "features of CLEVR split val"),
    ("missing image", "has no features of 1 image"),
    ("absent", "feature file not found"),
])
def test_a_corrupt_or_mismatched_feature_file_is_refused(damaged, damage, message):
    path = damaged / "features" / TINY_FEATURES / "train.npy"
    sidecar = sidecar_path(path)
    meta = json.loads(sidecar.read_text())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "shape":
        _edit_sidecar(sidecar, shape=[2, 1024, 4, 4])
    elif damage == "dtype":
        _edit_sidecar(sidecar, dtype="float32")
    elif damage == "no sidecar":
        sidecar.unlink()
    elif damage == "marker":
        _edit_sidecar(sidecar, format="something-else")
    elif damage == "bad json":
        sidecar.write_text(sidecar.read_text()[:40])
    elif damage == "wrong split":
        shutil.copy(path.with_name("val.npy"), path)
        shutil.copy(path.with_name("val.json"), sidecar)
    elif damage == "missing image":
        _edit_sidecar(sidecar, image_filenames=[meta["image_filenames"][0], "CLEVR_train_000009.png"])
    elif damage == "absent":
        path.unlink()
    with pytest.raises(DataError, match=message):
        features_problem(damaged)


@pytest.mark.slow
def test_a_damaged_feature_file_is_exit_code_2_through_the_command_line(damaged, tmp_path):
    path = damaged / "features" / TINY_FEATURES / "train.npy"
    _edit_sidecar(sidecar_path(path), shape=[3, 1024, 2, 2])
    config = tmp_path / "clevr.yaml"
    config.write_text(f"training:\n  problem: {{name: CLEVR, data_folder: {damaged}, images: features, "
                      f"feature_extractor: {TINY_FEATURES}}}\n  terminal_conditions: {{epoch_limit: 1}}\n")
    result = run_mip("split", config, "--fractions", "0.5", "0.5", "--output", tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{sidecar_path(path)}: the sidecar lists 2 images but its shape says 3 rows" in result.stderr


# --- the shipped experiment configs on the fixtures ---------------------------------------------------------
def test_mip_check_accepts_default_clevr_on_the_fixture(tmp_path, tiny_model, capsys):
    _, overrides = write_clevr_with_features(tmp_path / "CLEVR_v1.0")
    config = tmp_path / "tiny_clevr.yaml"
    config.write_text(f"default_configs: [{CONFIGS / 'vqa' / 'default_clevr.yaml'}]\nmodel: {{name: {tiny_model}}}\n")
    code = main(["check", str(config), *overrides, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "training: model TinyVQA" in out and "(4 samples" in out and "validation: " in out
    assert "testing: model TinyVQA" in out and "(2 samples" in out


def test_mip_check_accepts_default_cogent_with_its_valA_and_valB_settings(tmp_path, tiny_model, capsys):
    data, overrides = write_clevr_with_features(tmp_path / "CLEVR_CoGenT_v1.0", cogent=True)
    config = tmp_path / "tiny_cogent.yaml"
    config.write_text(f"default_configs: [{CONFIGS / 'vqa' / 'default_cogent.yaml'}]\nmodel: {{name: {tiny_model}}}\n")
    code = main(["check", str(config), *overrides, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "testing.valA: model TinyVQA" in out and "testing.valB: model TinyVQA" in out
    problem = CLEVRCoGenT(CLEVRCoGenT.Params(data_folder=str(data), split="valB", images="features",
                                             feature_extractor=TINY_FEATURES))
    assert problem.image_shape() == (1024, 2, 2)


def test_layer1_features_have_256_channels(data, tmp_path):
    extract_features([str(write_config(tmp_path, data))], ["extractor.last_layer=layer1", "dataset.splits=[val]"],
                     report=lambda line: None)
    problem = CLEVR(CLEVR.Params(data_folder=str(data), split="val", images="features",
                                 feature_extractor="resnet101_layer1_32px"))
    assert problem.image_shape() == (256, 8, 8)


def test_the_command_takes_overrides_after_its_flags_and_needs_a_config(capsys):
    from miprometheus.cli import build_parser, parse_args

    args = parse_args(build_parser(), ["extract-features", "a.yaml", "--threads", "1", "device=cuda"])
    assert args.items == ["a.yaml", "device=cuda"] and args.threads == 1
    assert main(["extract-features", "device=cuda"]) == 2
    assert "needs a CONFIG file" in capsys.readouterr().err

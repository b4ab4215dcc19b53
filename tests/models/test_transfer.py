"""Transfer: ``model.init_from`` (a checkpoint or an experiment folder, prefix mapping, strict) and ``model.freeze``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from miprometheus.checkpoint import load_checkpoint
from miprometheus.cli import main
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.models.transfer import map_keys
from miprometheus.params import param
from miprometheus.registry import register_model
from miprometheus.workers import runs
from miprometheus.workers.run_folder import RunOptions
from miprometheus.workers.trainer import Trainer
from tests.conftest import experiment_dirs


@register_model
class TransferProbe(Model):
    """Test model: an LSTM encoder under another name, a BatchNorm and a head (as a VQA model's question encoder)."""

    @dataclasses.dataclass
    class Params:
        input_item_size: int = param(doc="input size", from_problem=True)
        output_item_size: int = param(doc="output size", from_problem=True)
        hidden_size: int = param(16, "encoder units")

    def __init__(self, params: TransferProbe.Params) -> None:
        super().__init__(params)
        self.question_encoder = torch.nn.LSTM(params.input_item_size, params.hidden_size, batch_first=True)
        self.norm = torch.nn.BatchNorm1d(params.hidden_size)
        self.head = torch.nn.Linear(params.hidden_size, params.output_item_size)
        self.input_definitions = {"sequences": DataDefinition((ANY, ANY, params.input_item_size), "float32")}
        self.output_definitions = {"predictions": DataDefinition((ANY, ANY, params.output_item_size), "float32")}

    def forward(self, batch):
        hidden, _ = self.question_encoder(batch["sequences"])
        return self.head(self.norm(hidden.transpose(1, 2)).transpose(1, 2))


BASE = """
training:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 1, max_sequence_length: 4, size: 320}
  optimizer: {name: Adam, lr: 0.01}
  terminal_conditions: {episode_limit: 30}
  seed: 5
"""


def options(expdir: Path) -> RunOptions:
    return RunOptions(expdir=expdir, progress=False, command_line=["test"])


def write(path: Path, model: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BASE + "model: " + yaml.safe_dump(model, default_flow_style=True, width=1000))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A trained LSTM (hidden 16): the experiment folder weights are transferred from."""
    tmp = tmp_path_factory.mktemp("source")
    config = write(tmp / "source.yaml", {"name": "LSTM", "hidden_size": 16})
    return runs.train([str(config)], ["training.terminal_conditions.episode_limit=40"], options(tmp / "exp")).folder


def weights(folder: Path, which: str = "model_best.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(folder / "models" / which)["model"]


def test_init_from_with_prefix_then_freeze_keeps_frozen_weights_bit_identical_and_trains_the_rest(tmp_path, source):
    config = write(tmp_path / "probe.yaml", {
        "name": "TransferProbe", "hidden_size": 16, "freeze": ["question_encoder", "norm"],
        "init_from": {"path": str(source), "prefix": {"lstm.": "question_encoder."}}})
    # Weight decay would move every parameter the optimizer holds: frozen ones must not be there.
    overrides = ["training.optimizer={name: AdamW, lr: 0.01, weight_decay: 0.5}"]
    trainer = Trainer(validate(load_config([config], overrides)), seed=5)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainer.model.head.parameters()}

    folder = runs.train([str(config)], overrides, options(tmp_path / "exp")).folder
    final = weights(folder, "model_last.pt")
    loaded = weights(source)
    for key in ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]:
        assert torch.equal(initial[f"question_encoder.{key}"], loaded[f"lstm.{key}"])  # loaded through the mapping
        assert torch.equal(final[f"question_encoder.{key}"], loaded[f"lstm.{key}"])  # and untouched by training
    # The frozen BatchNorm stayed in eval mode: its running statistics never moved.
    for key in ["norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]:
        assert torch.equal(final[key], initial[key]), key
    assert int(final["norm.num_batches_tracked"]) == 0
    for key in ["head.weight", "head.bias"]:
        assert not torch.equal(final[key], initial[key]), f"{key} did not train"

    optimizer = load_checkpoint(folder / "models" / "model_last.pt")["optimizer"]
    assert len(optimizer["state"]) == 2 and optimizer["param_groups"][0]["params"] == [0, 1]  # head only
    info = json.loads((folder / "run_info.json").read_text())
    assert info["frozen"]["modules"] == ["question_encoder", "norm"]
    assert info["frozen"]["parameter_count"] == sum(p.numel() for n, p in trainer.model.named_parameters()
                                                    if not n.startswith("head."))
    assert info["init_from"]["checkpoint_file"] == str((source / "models" / "model_best.pt").resolve())
    assert info["init_from"]["loaded"] == 4 and info["init_from"]["prefix"] == {"lstm.": "question_encoder."}
    saved = yaml.safe_load((folder / "training_configuration.yaml").read_text())["model"]
    assert saved["freeze"] == ["question_encoder", "norm"] and saved["init_from"]["path"] == str(source)


@pytest.mark.parametrize("form", ["file", "folder_last"])
def test_init_from_a_checkpoint_file_or_a_folder_relative_to_the_config(tmp_path, source, form):
    shutil.copytree(source, tmp_path / "runs" / "source")
    init = "../runs/source/models/model_last.pt" if form == "file" else {"path": "../runs/source",
                                                                            "checkpoint": "last"}
    config = write(tmp_path / "configs" / "fine_tune.yaml", {"name": "LSTM", "hidden_size": 16, "init_from": init})
    spec = validate(load_config([config]))
    assert spec.model.init_from.path == str((tmp_path / "runs" / "source").resolve() /
                                            ("models/model_last.pt" if form == "file" else ""))  # absolute, as saved
    model = Trainer(spec, seed=5).model.state_dict()
    last = weights(source, "model_last.pt")
    assert model.keys() == last.keys() and all(torch.equal(model[k], last[k]) for k in last)


def test_resume_does_not_load_init_from_again(tmp_path, source):
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    config = write(tmp_path / "a.yaml", {"name": "LSTM", "hidden_size": 16, "init_from": str(copy)})
    folder = runs.train([str(config)], [], options(tmp_path / "exp")).folder
    shutil.rmtree(copy)  # the source is gone: a resume must not need it
    resumed = runs.train([], ["training.terminal_conditions.episode_limit=35"], options(tmp_path / "exp"),
                         resume=folder)
    assert resumed.episodes == 35
    info = json.loads((folder / "run_info.json").read_text())
    assert info["init_from"]["checkpoint_file"].startswith(str(copy.resolve()))  # the first run's record is kept


def strict_case(tmp_path: Path, source: Path, case: str) -> dict:
    return {
        "shape": {"name": "LSTM", "hidden_size": 32, "init_from": str(source)},
        "names": {"name": "TransferProbe", "init_from": str(source)},
        "layers": {"name": "LSTM", "hidden_size": 16, "num_layers": 2, "init_from": str(source)},
        "no_file": {"name": "LSTM", "init_from": str(tmp_path / "nowhere")},
    }[case]


@pytest.mark.parametrize("case, message", [
    ("shape", "shape mismatch: lstm.weight_ih_l0 (checkpoint (64, 10), model (128, 10))"),
    ("names", "missing in the checkpoint: question_encoder.weight_ih_l0"),
    ("layers", "missing in the checkpoint: lstm.weight_ih_l1"),
    ("no_file", "does not exist"),
])
def test_weights_that_do_not_fit_are_bad_input_before_any_folder(tmp_path, source, capsys, case, message):
    config = write(tmp_path / "bad.yaml", strict_case(tmp_path, source, case))
    assert main(["train", str(config), "--expdir", str(tmp_path / "exp"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert message in error and "bad.yaml" in error
    if case == "names":
        assert "not in the model: lstm.weight_ih_l0 -> lstm.weight_ih_l0" not in error
        assert "not in the model: lstm.weight_ih_l0" in error and "output.weight" in error
    assert not (tmp_path / "exp").exists()


def test_non_strict_loads_what_fits_and_records_the_rest(tmp_path, source):
    config = write(tmp_path / "loose.yaml", {"name": "LSTM", "hidden_size": 16, "num_layers": 2,
                                             "init_from": {"path": str(source), "strict": False}})
    trainer = Trainer(validate(load_config([config])), seed=5)
    loaded = weights(source)
    assert torch.equal(trainer.model.lstm.weight_hh_l0, loaded["lstm.weight_hh_l0"])
    assert torch.equal(trainer.model.output.weight, loaded["output.weight"])
    assert trainer.transfer["init_from"]["skipped"] == ["lstm.bias_hh_l1", "lstm.bias_ih_l1", "lstm.weight_hh_l1",
                                                        "lstm.weight_ih_l1"]


@pytest.mark.parametrize("freeze, message", [
    (["encoder"], "no submodule 'encoder'; its submodules are lstm, output"),
    (["lstm", "output"], "hold every parameter of LSTM; nothing would be trained"),
])
def test_bad_freeze_names_are_bad_input_naming_the_submodules(tmp_path, capsys, freeze, message):
    config = write(tmp_path / "freeze.yaml", {"name": "LSTM", "hidden_size": 8, "freeze": freeze})
    assert main(["train", str(config), "--expdir", str(tmp_path / "exp"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not experiment_dirs(tmp_path / "exp")
    assert main(["check", str(config)]) == 2  # mip check finds it too
    assert message in capsys.readouterr().err


def test_transfer_keys_are_validated_with_file_and_line(tmp_path):
    config = tmp_path / "typed.yaml"
    config.write_text(BASE + "model:\n  name: LSTM\n  freeze: 3\n  init_from: {path: x.pt, strict: maybe, "
                             "prefix: {lstm.: 4}}\n")
    with pytest.raises(ConfigError) as info:
        validate(load_config([config]))
    text = str(info.value)
    assert "typed.yaml:9: 'model.freeze' must be a list of submodule names" in text
    assert "typed.yaml:10: 'model.init_from.prefix' must map" in text
    config.write_text(BASE + "model:\n  name: LSTM\n  init_from: {path: x.pt, strcit: true}\n")
    with pytest.raises(ConfigError, match="Did you mean 'model.init_from.strict'"):
        validate(load_config([config]))


def test_prefix_mapping_uses_the_longest_matching_prefix_and_drops_unmapped_keys():
    state = {"encoder.a": 1, "encoder.inner.b": 2, "head.c": 3}
    assert map_keys(state, {"encoder.": "x.", "encoder.inner.": "y."}) == {"x.a": "encoder.a", "y.b": "encoder.inner.b"}
    assert map_keys(state, {"": "sub."}) == {"sub.encoder.a": "encoder.a", "sub.encoder.inner.b": "encoder.inner.b",
                                             "sub.head.c": "head.c"}
    assert map_keys(state, {}) == {k: k for k in state}

"""The model summary: nested rows, parameters, output shapes and multiply-accumulates measured on a real forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from miprometheus.cli import main
from miprometheus.workers.summary import Measurement, describe_output, measuring, summarize


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Nested(nn.Module):
    """A model with a nested block, a frozen layer, a parameter of its own and a layer it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 12)
        self.block = Block()
        self.frozen = nn.Linear(4, 3)
        self.unused = nn.Linear(3, 3)
        self.scale = nn.Parameter(torch.ones(3))
        self.frozen.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.block(self.embed(batch["inputs"]))
        return {"predictions": self.frozen(hidden) * self.scale, "hidden": hidden}


def measured(model: nn.Module, *args, **kwargs):
    with measuring(model) as measurement, torch.no_grad():
        model(*args, **kwargs)
    return measurement.summary()


def test_rows_nest_every_module_and_count_parameters_as_the_model_holds_them():
    model = Nested()
    summary = measured(model, {"inputs": torch.randn(5, 6)})
    assert [row.path for row in summary.rows] == [name for name, _ in model.named_modules()]
    rows = {row.path: row for row in summary.rows}
    assert summary.parameters == sum(p.numel() for p in model.parameters()) == rows[""].parameters
    assert summary.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.parameters - summary.trainable == 4 * 3 + 3  # the frozen layer
    assert rows["block"].parameters == rows["block.layers"].parameters == 12 * 8 + 8 + 8 * 4 + 4
    assert (rows["block.layers.0"].depth, rows["block.layers"].depth, rows[""].depth) == (3, 2, 0)
    # output shapes of a real forward, a dict output with its keys; a module never called has none
    assert rows["block.layers.0"].output == "[5, 8]" and rows["block"].output == "[5, 4]"
    assert rows[""].output == "predictions [5, 3], hidden [5, 4]" and summary.batch_size == 5
    assert (rows["unused"].calls, rows["unused"].output, rows["unused"].macs) == (0, "", None)
    assert rows["block.layers.1"].macs is None  # an activation: nothing counted
    table = summary.text()
    assert "\n    layers " in table and "\n      0 " in table  # nested by indentation
    assert f"parameters: {summary.parameters:,} ({summary.trainable:,} trainable, 15 frozen)" in table


def test_linear_and_convolution_macs_are_one_per_weight_and_output_position():
    linear = measured(nn.Linear(120, 84), torch.randn(64, 120))
    assert linear.macs == 64 * 84 * 120 == 645_120  # LeNet-5's F6 on a batch of 64; the bias is not a MAC
    conv = measured(nn.Conv2d(1, 6, 5), torch.randn(2, 1, 32, 32))
    assert conv.macs == 2 * 6 * 28 * 28 * 25
    grouped = measured(nn.Conv2d(4, 8, 3, groups=2, padding=1), torch.randn(1, 4, 5, 5))
    assert grouped.macs == 8 * 5 * 5 * (4 // 2) * 9
    model = Nested()
    rows = {row.path: row for row in measured(model, {"inputs": torch.randn(5, 6)}).rows}
    assert rows["block"].macs == 5 * 8 * 12 + 5 * 4 * 8  # a container: the sum of its counted layers
    assert rows[""].macs == 5 * 12 * 6 + rows["block"].macs + 5 * 3 * 4


def test_recurrent_attention_and_embedding_macs():
    lstm = measured(nn.LSTM(10, 16, batch_first=True), torch.randn(4, 7, 10))
    assert lstm.macs == 4 * 7 * 4 * 16 * (10 + 16)
    gru = measured(nn.GRU(10, 16, num_layers=2, bidirectional=True), torch.randn(7, 4, 10))
    assert gru.macs == 7 * 4 * 2 * (3 * 16 * (10 + 16) + 3 * 16 * (2 * 16 + 16))
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(3, 5, 10), [5, 3, 2], batch_first=True)
    packed_summary = measured(nn.LSTM(10, 16, batch_first=True), packed)
    assert packed_summary.macs == (5 + 3 + 2) * 4 * 16 * (10 + 16)  # padding is not computed
    assert packed_summary.rows[0].output.startswith("packed [10, 16]")
    assert measured(nn.LSTMCell(10, 16), torch.randn(4, 10)).macs == 4 * 4 * 16 * 26
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    projections = 5 * 8 * 8 + 3 * 8 * 8 + 3 * 8 * 8 + 5 * 8 * 8
    assert measured(attention, x, memory, memory).macs == 2 * (projections + 2 * 5 * 3 * 8)
    assert measured(attention, query=x, key=memory, value=memory).macs == 2 * (projections + 2 * 5 * 3 * 8)
    assert measured(nn.Embedding(10, 4), torch.tensor([[1, 2, 3]])).macs == 0  # a lookup


class Loop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[1], 5)
        for step in x:
            h = self.cell(step, h)
        return h


def test_a_module_run_in_a_loop_is_one_row_with_its_calls_and_summed_macs():
    rows = {row.path: row for row in measured(Loop(), torch.randn(6, 2, 3)).rows}
    assert rows["cell"].calls == 6 and rows["cell"].output == "[2, 5]"
    assert rows["cell"].macs == 6 * 2 * 3 * 5 * (3 + 5) == rows[""].macs


def test_measuring_once_removes_the_hooks_at_the_end_of_the_first_forward():
    model = Nested()
    measurement = Measurement(model, once=True)
    model({"inputs": torch.randn(2, 6)})
    assert measurement.measured and not measurement.handles
    assert all(not module._forward_hooks for module in model.modules())
    model({"inputs": torch.randn(3, 6)})
    assert measurement.calls[""] == 1 and measurement.summary().batch_size == 2


def test_sizes_in_float32_and_in_the_training_precision():
    model = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10))
    with measuring(model) as measurement:
        model(torch.randn(4, 10))
    floats = 110 + 20 + 20  # weights, affine, running mean and variance
    half = measurement.summary("bf16")
    assert half.bytes_float32 == floats * 4 + 8  # num_batches_tracked: one int64
    assert half.bytes_precision == floats * 2 + 8
    assert "0.000608 MB in float32, 0.000308 MB in bf16 (the training precision)" in "\n".join(half.totals())


def test_long_outputs_are_cut_to_the_column():
    text = describe_output([torch.zeros(64, 10)] * 20)
    assert len(text) == 48 and text.endswith("…")


# --- mip summary on configs: a vision model, dict inputs with several outputs (VQA, translation) ------------------
TINY_TRANSLATION = """
training:
  problem: {{name: TranslationAnki, data_folder: {folder}, download: false, split: all, validation_fraction: 0.0,
             test_fraction: 0.0, max_sequence_length: null, batch_size: 4}}
  optimizer: {{name: Adam, lr: 0.001}}
  terminal_conditions: {{episode_limit: 2}}
model: {{name: TransformerEncoderDecoder, d_model: 16, nhead: 2, num_encoder_layers: 1, num_decoder_layers: 1,
         dim_feedforward: 32}}
"""

TINY_VQA = """
training:
  problem: {{name: SortOfCLEVR, data_folder: {folder}, num_scenes: 4, img_size: 32, batch_size: 8}}
  optimizer: {{name: Adam, lr: 0.001}}
  terminal_conditions: {{episode_limit: 2}}
model: {{name: MAC, image_encoder: conv4, dim: 16, max_step: 2, embedding_size: 8}}
"""


def translation_config(tmp_path: Path) -> Path:
    from tests.problems.text_to_text.test_translation_anki import three_columns, write_zip

    write_zip(tmp_path / "anki", three_columns())
    path = tmp_path / "translation.yaml"
    path.write_text(TINY_TRANSLATION.format(folder=tmp_path / "anki"))
    return path


def test_translation_summary_reads_dict_inputs_and_declares_every_output(tmp_path):
    report = summarize([str(translation_config(tmp_path))], [])
    summary = report.summary
    rows = {row.path: row for row in summary.rows}
    assert summary.model == "TransformerEncoderDecoder" and summary.batch_size == 4
    assert rows[""].output.startswith("predictions [4, ") and "predicted_tokens [4, " in rows[""].output
    attention = rows["transformer.encoder.layers.0.self_attn"]
    assert attention.kind == "MultiheadAttention" and attention.macs > 0 and attention.calls == 1
    assert rows["transformer"].calls == 0  # the model calls its encoder and decoder, not nn.Transformer itself
    assert summary.parameters == rows[""].parameters and summary.macs == rows[""].macs
    assert report.graph is None


def test_vqa_summary_through_the_command(tmp_path, monkeypatch, capsys):
    config = tmp_path / "vqa.yaml"
    config.write_text(TINY_VQA.format(folder=tmp_path / "scenes"))
    monkeypatch.chdir(tmp_path)
    assert main(["summary", str(config), "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model MAC:"
    assert any(line.startswith("  input_unit ") for line in lines)
    assert not any(line.startswith("    ") for line in lines)  # --depth 1: the model's children only
    assert any(line.startswith("parameters: ") for line in lines)
    assert any(line.startswith("multiply-accumulates: ") and "on a batch of 8" in line for line in lines)
    assert not list(tmp_path.glob("*_graph*"))  # no graph unless asked for


def test_summary_refuses_bad_input_as_check_does(tiny_config, capsys):
    assert main(["summary", str(tiny_config), "model.hidden_size=-1"]) == 2
    error = capsys.readouterr().err
    assert "model.hidden_size" in error and "Traceback" not in error
    assert main(["summary", str(tiny_config.parent / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main(["summary", str(tiny_config), "--graph-depth", "-1"])
    assert usage.value.code == 2 and "--graph-depth" in capsys.readouterr().err


def test_the_training_precision_sizes_the_model(tiny_config):
    summary = summarize([str(tiny_config)], ["training.precision=bf16"]).summary
    assert summary.precision == "bf16" and summary.bytes_precision < summary.bytes_float32
    assert summary.parameters == sum(row.parameters for row in summary.rows if row.depth == 1)

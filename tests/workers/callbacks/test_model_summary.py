"""A new run's trainer.log opens with the model's table, measured on its first step; `mip train --graph` draws the
model into the experiment folder and `--tensorboard` fills the graph tab, without changing what training does."""

from __future__ import annotations

import csv
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from miprometheus.cli import main
from miprometheus.layout import LAST, MODELS_DIR, TRAINER_LOG, TRAINING_CSV
from tests.conftest import experiment_dirs
from tests.workers.test_summary import TINY_VQA

SHORT = "training.terminal_conditions.episode_limit=3"


def train(tmp_path: Path, name: str, *args: str) -> Path:
    """``mip train ARGS`` in this process, into its own folder; the experiment folder."""
    expdir = tmp_path / name
    assert main(["train", *args, SHORT, "--expdir", str(expdir), "--no-progress"]) == 0
    [folder] = experiment_dirs(expdir)
    return folder


def test_trainer_log_holds_the_table_of_the_first_step(tmp_path, tiny_config):
    folder = train(tmp_path, "plain", str(tiny_config))
    log = (folder / TRAINER_LOG).read_text()
    lines = [line.split(" INFO ", 1)[-1] for line in log.splitlines()]
    table = lines.index("model LSTM:")
    assert lines[table + 1].split() == ["module", "type", "output", "shape", "calls", "parameters", "trainable", "MACs"]
    assert lines[table + 3].startswith("LSTM ") and lines[table + 4].startswith("  lstm ")
    # hidden 16, 10 bits in, 8 out: 4 x 16 x (10 + 16 + 1 + 16) + 8 x 17 parameters; 16 sequences in the first batch
    assert "parameters: 1,928 (1,928 trainable, 0 frozen)" in lines
    assert any(line.startswith("multiply-accumulates: ") and line.endswith("on a batch of 16 (the counted layers: "
                                                                          "linear, convolution, recurrent, attention)")
               for line in lines)
    assert not list(folder.glob("model_graph*"))  # no graph unless asked for


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_graph_and_tensorboard_graph_leave_training_as_it_is(tmp_path):
    """MAC has dropout (random draws) and batch norm (running statistics): drawing and tracing it after the first
    step must change neither the statistics nor the weights of the run."""
    config = tmp_path / "vqa.yaml"
    config.write_text(TINY_VQA.format(folder=tmp_path / "scenes"))
    plain = train(tmp_path, "plain", str(config), "training.seed=5")
    drawn = train(tmp_path, "drawn", str(config), "training.seed=5", "--graph", "--tensorboard", "0")
    svg = ElementTree.parse(drawn / "model_graph.svg").getroot()
    assert svg.tag.endswith("svg") and "InputUnit" in " ".join(svg.itertext())
    assert (drawn / "model_graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (drawn / "model_graph.gv").is_file()
    log = (drawn / TRAINER_LOG).read_text()
    assert f"model graph: {drawn / 'model_graph.svg'} and model_graph.png" in log and "WARNING" not in log
    events = EventAccumulator(str(drawn / "tensorboard"))
    events.Reload()
    assert events.Tags()["graph"]
    assert {"aten::_convolution", "aten::lstm", "aten::batch_norm"} <= {node.op for node in events.Graph().node}

    def losses(folder: Path) -> list[str]:
        with open(folder / TRAINING_CSV) as handle:
            return [row["loss"] for row in csv.DictReader(handle)]

    assert losses(plain) == losses(drawn) and len(losses(plain)) == 3
    weights = [torch.load(f / MODELS_DIR / LAST, weights_only=True)["model"] for f in (plain, drawn)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])  # batch-norm statistics too

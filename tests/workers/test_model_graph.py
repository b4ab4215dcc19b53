"""The model's graph: torchview's recording rendered by Graphviz, deeper or shallower where it must be, one line
where it cannot be drawn, and TensorBoard's graph tab; none of it changes the model or the random generators."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from miprometheus.workers.model_graph import (
    MAX_ELEMENTS,
    add_tensorboard_graph,
    draw,
    preserved,
    write_graph,
)
from tests.models.translation.test_translation_models import copy_batch, transformer_model

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot program is not installed (apt-get install graphviz)")


class Classifier(nn.Module):
    """Dict input, nested modules, dropout and batch norm (what the graph's extra forward must leave alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5))
        self.frozen = nn.Sequential(nn.Linear(12, 12), nn.Dropout(0.5))
        self.output = nn.Linear(12, 3)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.output(self.frozen(self.features(batch["inputs"])))


class Chatty(nn.Module):
    """A submodule whose forward is 300 small operations: too many nodes to draw once it is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.last = nn.Identity()  # torchview hides the operations of a module without submodules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(300):
            x = torch.tanh(x)
        return self.last(x)


class WithChatty(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.chatty = Chatty()
        self.output = nn.Linear(4, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.output(self.chatty(batch["inputs"]))


class Picky(nn.Module):
    """A model that refuses the tensors torchview records with (a stand-in for a model it cannot run)."""

    def __init__(self) -> None:
        super().__init__()
        self.output = nn.Linear(4, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if type(batch["inputs"]) is not torch.Tensor:
            raise TypeError("plain tensors only")
        return self.output(batch["inputs"])


def batch() -> dict[str, torch.Tensor]:
    return {"inputs": torch.randn(5, 6)}


@needs_dot
def test_the_graph_is_written_as_svg_png_and_graphviz_source(tmp_path):
    model = Classifier().train()
    result = write_graph(model, batch(), tmp_path, "graph", depth=2)
    assert result.drawn and [p.name for p in result.files] == ["graph.svg", "graph.png", "graph.gv"]
    assert result.message == f"model graph: {tmp_path / 'graph.svg'} and graph.png"
    svg = ElementTree.parse(tmp_path / "graph.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(svg.itertext())
    assert "Linear" in text and "BatchNorm1d" in text and "(5, 12)" in text and "(5, 3)" in text  # shapes on edges
    with Image.open(tmp_path / "graph.png") as png:
        assert png.format == "PNG" and png.mode == "P" and png.width > 50  # a palette image
    assert "digraph" in (tmp_path / "graph.gv").read_text()
    collapsed = write_graph(model, batch(), tmp_path, "collapsed", depth=1)
    assert "BatchNorm1d" not in (tmp_path / "collapsed.gv").read_text()  # nested modules collapsed at depth 1
    assert "Sequential" in (tmp_path / "collapsed.gv").read_text() and collapsed.drawn


def test_without_graphviz_the_source_is_written_and_said_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no dot to be found
    result = write_graph(Classifier(), batch(), tmp_path, "graph")
    assert not result.drawn and result.files == [tmp_path / "graph.gv"] and (tmp_path / "graph.gv").is_file()
    assert "needs Graphviz's dot program" in result.message and not (tmp_path / "graph.svg").exists()


def test_a_depth_torchview_cannot_draw_is_drawn_deeper():
    # the Transformer reads its cross-attention with a hook: a tensor from inside a module drawn collapsed
    digraph, note = draw(transformer_model().train(), copy_batch(), depth=1)
    assert note == "drawn at depth 3: torchview cannot draw it at depth 1"
    assert "MultiheadAttention" in digraph.source


def test_a_graph_too_big_to_lay_out_is_drawn_shallower():
    digraph, note = draw(WithChatty(), {"inputs": torch.randn(2, 4)}, depth=2)
    assert note.startswith("drawn at depth 1: at depth 2 it has ") and f"more than the {MAX_ELEMENTS}" in note
    assert "Chatty" in digraph.source and digraph.source.count("tanh") == 0


def test_a_model_torchview_cannot_draw_costs_one_line_and_no_file(tmp_path):
    result = write_graph(Picky(), {"inputs": torch.randn(2, 4)}, tmp_path, "graph")
    assert result.files == [] and list(tmp_path.iterdir()) == []
    assert result.message == "model graph: torchview could not draw Picky (TypeError: plain tensors only); " \
                             "no graph written"


def test_drawing_leaves_the_generators_modes_and_buffers_as_they_were():
    model = Classifier().train()
    model.frozen.eval()  # as model.freeze leaves a frozen submodule
    inputs = batch()
    running_mean = model.features[1].running_mean.clone()
    state = torch.get_rng_state()
    draw(model, inputs, depth=2)
    with preserved(model):
        model.train()(inputs)  # what add_graph and torchview do: flip modes, update statistics, draw dropout
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(model.features[1].running_mean, running_mean) and model.features[1].num_batches_tracked == 0
    assert model.training and model.features.training and not model.frozen.training and not model.frozen[1].training


class Untraceable(nn.Module):
    """An output ``torch.jit.trace`` cannot record: a string beside the predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.output = nn.Linear(6, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, object]:
        return {"predictions": self.output(batch["inputs"]), "note": "text"}


def graph_nodes(folder) -> list:
    events = EventAccumulator(str(folder))
    events.Reload()
    return list(events.Graph().node) if events.Tags()["graph"] else []


def test_tensorboard_graph_tab_holds_the_traced_model_or_says_why_not(tmp_path):
    cases = {"classifier": (Classifier(), batch()), "transformer": (transformer_model(), copy_batch()),
             "untraceable": (Untraceable(), batch())}
    for name, (model, inputs) in cases.items():
        writer = SummaryWriter(str(tmp_path / name))
        reason = add_tensorboard_graph(writer, model.train(), inputs)
        writer.close()
        if name == "untraceable":
            assert reason is not None and "\n" not in reason and graph_nodes(tmp_path / name) == []
        else:
            assert reason is None
    assert any(node.op == "aten::linear" for node in graph_nodes(tmp_path / "classifier"))
    # traced as it trains: the decoder teacher-forced in one pass (not decoding on its own, a loop of steps)
    operations = {node.op for node in graph_nodes(tmp_path / "transformer")}
    assert {"aten::embedding", "aten::layer_norm", "aten::dropout"} <= operations

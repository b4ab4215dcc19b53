"""The model's graph: modules as nodes, tensors with their shapes on the edges, nested modules drawn to a depth.

torchview records a forward pass of the model on a real batch and lays the graph out with Graphviz (``mip summary
--graph``, ``mip train --graph``); TensorBoard's graph tab gets the model as ``torch.jit.trace`` sees it. Neither
may change the run: both run inside :func:`preserved`, and a model they cannot draw costs one line, never the run.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from miprometheus.files import atomic_write, atomic_write_text
from miprometheus.seeding import capture_rng_states, restore_rng_states

#: how many levels of nested modules are drawn by default (the model is level 0)
GRAPH_DEPTH = 2
#: torchview fails on some models at some depths (a tensor taken from inside a module drawn collapsed, as the
#: Transformer's cross-attention read by a hook): up to this many levels deeper are tried before giving up
EXTRA_DEPTH = 2
#: the most nodes a graph is drawn with: Graphviz lays 150 out in 2 s, 260 in 7 s, an unrolled 100-step loop never
MAX_ELEMENTS = 200
#: the PNG is reduced to a palette of this many colours (Graphviz draws with few): a third of the bytes
PNG_COLOURS = 16


@dataclass
class GraphFiles:
    """What :func:`write_graph` wrote, and one line saying so (or why there is no picture)."""

    files: list[Path]
    message: str

    @property
    def drawn(self) -> bool:
        """Whether the pictures were written (not only the Graphviz source, or nothing)."""
        return any(path.suffix == ".svg" for path in self.files)


class GraphNotDrawn(Exception):
    """torchview could not record or lay out the model's forward pass."""


@contextlib.contextmanager
def preserved(model: torch.nn.Module) -> Iterator[None]:
    """Run an extra forward pass that leaves no trace on training: the random generators (dropout), the
    train/eval mode of every module (a frozen submodule stays in eval mode) and the buffers (batch-norm
    statistics) are put back as they were."""
    rng = capture_rng_states()
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, training in modes:
            module.training = training
        restore_rng_states(rng)


def _device(model: torch.nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _elements(digraph: Any) -> int:
    """The nodes and clusters of a graph (its statements that are not edges)."""
    return sum(1 for line in digraph.body if "->" not in line)


def draw(model: torch.nn.Module, inputs: dict[str, Any], depth: int = GRAPH_DEPTH) -> tuple[Any, str]:
    """The graphviz ``Digraph`` of ``model`` run on ``inputs`` (in its present mode), and a note ("" or why it was
    drawn at another depth). Loops over one module are rolled into one node where torchview can (the cells of
    recurrent models). Where torchview fails at ``depth``, the next :data:`EXTRA_DEPTH` levels are tried; where the
    graph has more than :data:`MAX_ELEMENTS` nodes (Graphviz would take minutes), the levels above it."""
    import torchview

    errors: list[BaseException] = []
    too_big: tuple[int, int] | None = None

    def attempt(level: int) -> Any:
        for roll in (True, False):  # a graph torchview cannot roll is drawn unrolled
            try:
                with preserved(model):
                    return torchview.draw_graph(model, input_data=[inputs], depth=level, roll=roll,
                                                expand_nested=True, mode="train" if model.training else "eval",
                                                device=_device(model), graph_name=type(model).__name__).visual_graph
            except Exception as exc:  # torchview raises what it meets: KeyError, StopIteration, RuntimeError
                errors.append(exc.__cause__ or exc)
        return None

    deeper, shallower = range(depth, depth + EXTRA_DEPTH + 1), range(depth - 1, -1, -1)
    for level in [*deeper, *shallower]:
        if too_big is not None and level in deeper:
            continue  # deeper is bigger still
        digraph = attempt(level)
        if digraph is None:
            continue
        if _elements(digraph) > MAX_ELEMENTS:
            too_big = too_big or (level, _elements(digraph))
            continue
        if level == depth:
            return digraph, ""
        if too_big is not None:
            return digraph, (f"drawn at depth {level}: at depth {too_big[0]} it has {too_big[1]} nodes, more than "
                             f"the {MAX_ELEMENTS} a picture shows")
        return digraph, f"drawn at depth {level}: torchview cannot draw it at depth {depth}"
    first = errors[0] if errors else None
    reason = (f"{type(first).__name__}: {str(first).splitlines()[0][:200] if str(first) else 'no message'}" if first
              else f"more than {MAX_ELEMENTS} nodes at every depth")
    raise GraphNotDrawn(f"torchview could not draw {type(model).__name__} ({reason})")


def _small_png(data: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=PNG_COLOURS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def write_graph(model: torch.nn.Module, inputs: dict[str, Any], folder: Path, stem: str,
                depth: int = GRAPH_DEPTH) -> GraphFiles:
    """Draw ``model`` on ``inputs`` into ``folder``: ``<stem>.svg``, ``<stem>.png`` and the Graphviz source
    ``<stem>.gv``. Without Graphviz's ``dot`` program only the source is written; a model torchview cannot draw
    gives no file. Either way the message says what happened, in one line; only a file that cannot be written
    raises (``WriteFailed``, as every write of the run)."""
    import graphviz

    try:
        digraph, note = draw(model, inputs, depth)
    except GraphNotDrawn as exc:
        return GraphFiles([], f"model graph: {exc}; no graph written")
    source = Path(folder) / f"{stem}.gv"
    atomic_write_text(source, digraph.source)
    deeper = f" ({note})" if note else ""
    try:
        svg, png = digraph.pipe(format="svg"), _small_png(digraph.pipe(format="png"))
    except graphviz.ExecutableNotFound:
        return GraphFiles([source], f"model graph: {source} (rendering it as SVG and PNG needs Graphviz's dot "
                                    f"program, not found: https://graphviz.org/download/){deeper}")
    except graphviz.CalledProcessError as exc:
        reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        return GraphFiles([source], f"model graph: {source} (Graphviz could not render it: "
                                    f"{reason[-1] if reason else exc}){deeper}")
    files = [source.with_suffix(".svg"), source.with_suffix(".png")]
    for path, data in zip(files, (svg, png)):
        atomic_write(path, lambda handle, data=data: handle.write(data), mode="wb")
    return GraphFiles([*files, source], f"model graph: {files[0]} and {files[1].name}{deeper}")


def add_tensorboard_graph(writer: Any, model: torch.nn.Module, inputs: dict[str, Any]) -> str | None:
    """Put the model, traced by ``torch.jit.trace`` on ``inputs`` in its present mode, into TensorBoard's graph tab
    (``writer``: a ``SummaryWriter``). None when it is there; otherwise why not, in one line.

    ``SummaryWriter.add_graph`` is not used: it traces in eval mode (a translation model then decodes on its own, a
    loop over its output) with ``torch.jit.trace``'s check, which runs the model again and compares: 35 s spent on
    the Transformer to fail. Its conversion of the trace, ``parse``, is used on a trace without the check."""
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.versions_pb2 import VersionDef
    from torch.utils.tensorboard._pytorch_graph import parse

    try:
        # the tracer's warnings would flood the log: the reason of a failure is returned instead
        with preserved(model), torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            trace = torch.jit.trace(model, (inputs,), strict=False, check_trace=False)
            nodes = parse(trace.inlined_graph, trace, (inputs,))
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0][:200] if lines else 'no message'}"
    # the graph event add_graph writes (TensorBoard's graph plugin reads GraphDef events, whatever made them)
    writer.file_writer.add_onnx_graph(GraphDef(node=nodes, versions=VersionDef(producer=22)))
    return None


__all__ = ["EXTRA_DEPTH", "GRAPH_DEPTH", "MAX_ELEMENTS", "GraphFiles", "GraphNotDrawn", "add_tensorboard_graph", "draw",
           "preserved", "write_graph"]

"""The model summary: one row per module, nested, measured on a real batch (``mip summary``, the table of trainer.log).

Forward hooks on every module record, during one forward pass, how often each module ran, the shapes of its
first output and the multiply-accumulates (MACs) of the layers where the count is well defined: linear,
bilinear and convolution layers, the recurrent layers and cells, attention, embeddings (0: a lookup). Bias
additions, activations, pooling and normalisation, and the functional code of a module's own ``forward`` are not
counted; a container's MACs are the sum of its counted layers. A module run several times in one pass (a
recurrent cell per time step, a decoder per output word) is one row, its MACs summed over the calls.

torchinfo (the library one would use) is not: it lists every call of a module as its own row (a 100-step NTM
would make hundreds), counts an embedding's lookup as multiplications and misses the products of attention.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from miprometheus.workers.model_graph import GraphFiles

#: the width of the output-shape column: a module returning many tensors is cut short
SHAPE_WIDTH = 48
#: bytes of a floating-point value in each training precision (DESIGN §14)
PRECISION_BYTES = {"32": ("float32", 4), "bf16": ("bf16", 2), "16-mixed": ("float16", 2)}
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


# --- the multiply-accumulates of one call -------------------------------------------------------------------
def layer_macs(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> int | None:
    """Multiply-accumulates of one call of ``module`` (bias additions not counted), or None where not defined."""
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return 0  # a lookup
    if isinstance(module, nn.MultiheadAttention):
        return _attention_macs(module, args, kwargs)
    if isinstance(module, nn.RNNBase):
        return _recurrent_macs(module, args[0] if args else kwargs.get("input"))
    if isinstance(module, nn.RNNCellBase):
        return _cell_macs(module, args[0] if args else kwargs.get("input"))
    out = output if isinstance(output, torch.Tensor) else None
    if out is None:
        return None
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, nn.Bilinear):
        return out.numel() * module.in1_features * module.in2_features
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        first = args[0] if args else kwargs.get("input")
        if not isinstance(first, torch.Tensor):
            return None
        return first.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return None


def _recurrent_macs(module: nn.RNNBase, inputs: Any) -> int | None:
    """LSTM, GRU, RNN: per step, layer and direction ``gates x H x (input + hidden)`` (+ the LSTM's projection)."""
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        steps = inputs.data.shape[0]  # the sum of the batch sizes: every (sample, step) once
    elif isinstance(inputs, torch.Tensor):
        steps = inputs.shape[0] * (inputs.shape[1] if inputs.dim() == 3 else 1)
    else:
        return None
    directions = 2 if module.bidirectional else 1
    hidden, projected = module.hidden_size, getattr(module, "proj_size", 0)
    state = projected or hidden  # the size of h, what the next step and the next layer read
    per_step, input_size = 0, module.input_size
    for _ in range(module.num_layers):
        per_direction = _GATES[module.mode] * hidden * (input_size + state) + (hidden * projected)
        per_step += directions * per_direction
        input_size = state * directions
    return steps * per_step


def _cell_macs(module: nn.RNNCellBase, inputs: Any) -> int | None:
    if not isinstance(inputs, torch.Tensor):
        return None
    batch = inputs.shape[0] if inputs.dim() == 2 else 1
    gates = 4 if isinstance(module, nn.LSTMCell) else 3 if isinstance(module, nn.GRUCell) else 1
    return batch * gates * module.hidden_size * (module.input_size + module.hidden_size)


def _attention_macs(module: nn.MultiheadAttention, args: tuple, kwargs: dict[str, Any]) -> int | None:
    """The query, key, value and output projections, the scores ``Q K^T`` and the weighted sum of the values."""
    names = ("query", "key", "value")
    query, key, value = (args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names))
    if not all(isinstance(t, torch.Tensor) for t in (query, key, value)):
        return None
    if query.dim() == 2:  # unbatched: [L, E]
        batch, queries, keys = 1, query.shape[0], key.shape[0]
    elif module.batch_first:
        batch, queries, keys = query.shape[0], query.shape[1], key.shape[1]
    else:
        batch, queries, keys = query.shape[1], query.shape[0], key.shape[0]
    e = module.embed_dim
    projections = queries * e * e + keys * module.kdim * e + keys * module.vdim * e + queries * e * e
    return batch * (projections + 2 * queries * keys * e)


# --- describing outputs ---------------------------------------------------------------------------------------
def _tensors(value: Any, label: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors in an output (a tensor, tuple, list, dict or dataclass), each with the key that names it."""
    if isinstance(value, torch.Tensor):
        yield label, value
    elif isinstance(value, nn.utils.rnn.PackedSequence):
        yield "packed", value.data  # [the sum of the lengths, features]; the rest is bookkeeping
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, str(key))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _tensors(item, label)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _tensors(getattr(value, item.name), item.name)


def describe_output(value: Any, width: int = SHAPE_WIDTH) -> str:
    """The shapes of the tensors in an output: ``[64, 10]``, or ``predictions [64, 14, 152], attention [...]``."""
    parts = [f"{label} {list(t.shape)}" if label else str(list(t.shape)) for label, t in _tensors(value)]
    text = ", ".join(parts)
    return text if len(text) <= width else text[:width - 1] + "…"


def _batch_size(output: Any) -> int | None:
    predictions = output.get("predictions") if isinstance(output, Mapping) else output
    if isinstance(predictions, torch.Tensor) and predictions.dim() > 0:
        return int(predictions.shape[0])
    return None


# --- the summary ------------------------------------------------------------------------------------------------
@dataclass
class ModuleRow:
    """One module of the model, with what one forward pass measured of it."""

    path: str  # dotted name in the model ("" for the model itself)
    kind: str  # the module's class name
    parameters: int  # of the module and its submodules
    trainable: int
    calls: int = 0  # how often it ran in the forward pass
    output: str = ""  # the shapes of its first output
    macs: int | None = None  # of its counted layers (itself or its submodules), summed over its calls

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1


@dataclass
class ModelSummary:
    """The rows of a model's modules and its totals, measured on one batch."""

    model: str
    rows: list[ModuleRow]
    parameters: int
    trainable: int
    #: bytes of the parameters and buffers, floating-point values at 4 bytes
    bytes_float32: int
    #: the same, floating-point values in the training precision
    bytes_precision: int
    precision: str
    batch_size: int | None
    macs: int | None = None

    def table(self, depth: int | None = None) -> str:
        """The rows as a text table (modules nested by indentation), down to ``depth`` levels below the model."""
        header = ("module", "type", "output shape", "calls", "parameters", "trainable", "MACs")
        lines = []
        for row in self.rows:
            if depth is not None and row.depth > depth:
                continue
            name = self.model if not row.path else "  " * row.depth + row.path.rsplit(".", 1)[-1]
            lines.append((name, row.kind, row.output or "-", str(row.calls) if row.calls else "-",
                          f"{row.parameters:,}", f"{row.trainable:,}", "" if row.macs is None else f"{row.macs:,}"))
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
        right = {3, 4, 5, 6}  # numbers are right-aligned

        def render(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(render(header))
        return "\n".join([render(header), rule, *map(render, lines), rule])

    def totals(self) -> list[str]:
        """The totals, one line each: parameters, size, multiply-accumulates."""
        frozen = self.parameters - self.trainable
        name, _ = PRECISION_BYTES.get(self.precision, (self.precision, 4))
        size = f"size of the parameters and buffers: {_megabytes(self.bytes_float32)} in float32"
        if self.precision == "32":
            size += " (the training precision)"
        else:
            size += f", {_megabytes(self.bytes_precision)} in {name} (the training precision)"
        lines = [f"parameters: {self.parameters:,} ({self.trainable:,} trainable, {frozen:,} frozen)", size]
        if self.macs is not None:
            batch = f" on a batch of {self.batch_size}" if self.batch_size else ""
            lines.append(f"multiply-accumulates: {self.macs:,}{batch} (the counted layers: linear, convolution, "
                         "recurrent, attention)")
        return lines

    def text(self, depth: int | None = None) -> str:
        """The summary as printed and logged: a title, the table, the totals."""
        return "\n".join([f"model {self.model}:", self.table(depth), *self.totals()])


def _megabytes(count: int) -> str:
    """Bytes as MB (10^6 bytes), three significant digits below 1 MB."""
    megabytes = count / 1e6
    return f"{megabytes:,.2f} MB" if megabytes >= 1 else f"{megabytes:.3g} MB"


def _size(model: nn.Module, float_bytes: int) -> int:
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()
    return sum(t.numel() * (float_bytes if t.is_floating_point() else t.element_size()) for t in tensors)


class Measurement:
    """Forward hooks on every module of ``model``, recording calls, first outputs and MACs.

    ``once``: the hooks go away at the end of the model's first forward pass (a training run measures its first
    step without slowing the others). :meth:`close` removes them in any case.
    """

    def __init__(self, model: nn.Module, once: bool = False) -> None:
        self.model = model
        self.once = once
        self.calls: dict[str, int] = {}
        self.outputs: dict[str, str] = {}
        self.macs: dict[str, int] = {}
        self.batch_size: int | None = None
        self.handles = [module.register_forward_hook(self._hook(name), with_kwargs=True)
                        for name, module in model.named_modules()]

    def _hook(self, name: str) -> Any:
        def record(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name not in self.outputs:
                self.outputs[name] = describe_output(output)
            macs = layer_macs(module, args, kwargs, output)
            if macs is not None:
                self.macs[name] = self.macs.get(name, 0) + macs
            if module is self.model:
                self.batch_size = self.batch_size or _batch_size(output)
                if self.once:
                    self.close()
        return record

    @property
    def measured(self) -> bool:
        """Whether the model ran under the hooks."""
        return "" in self.calls

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def summary(self, precision: str = "32") -> ModelSummary:
        """The summary of what was measured (the shapes, calls and MACs of the forward passes seen)."""
        model = self.model
        rows = []
        for path, module in model.named_modules():
            counted = [macs for name, macs in self.macs.items() if name == path or name.startswith(f"{path}.")
                       or not path]
            parameters = list(module.parameters())
            rows.append(ModuleRow(path, type(module).__name__, sum(p.numel() for p in parameters),
                                  sum(p.numel() for p in parameters if p.requires_grad), self.calls.get(path, 0),
                                  self.outputs.get(path, ""), sum(counted) if counted else None))
        _, float_bytes = PRECISION_BYTES.get(precision, ("", 4))
        root = rows[0]
        return ModelSummary(type(model).__name__, rows, root.parameters, root.trainable, _size(model, 4),
                            _size(model, float_bytes), precision, self.batch_size, root.macs)


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[Measurement]:
    """Measure the forward passes run inside the block; the hooks are removed on the way out."""
    measurement = Measurement(model)
    try:
        yield measurement
    finally:
        measurement.close()


@dataclass
class SummaryReport:
    """What ``mip summary`` found: the summary, and the graph's files when one was asked for."""

    summary: ModelSummary
    graph: GraphFiles | None = None


def summarize(config_paths: list[str], overrides: list[str], graph_folder: Path | None = None,
              graph_depth: int | None = None) -> SummaryReport:
    """The summary of the model a config trains, measured on the first batch of its training split as the first
    training step sees it (training mode, frozen submodules in eval mode); with ``graph_folder``, its graph drawn
    there too (``<Model>_graph.svg``, ``.png``, ``.gv``). Bad input (config, handshake, data) raises as in
    ``mip check``."""
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.models.transfer import set_train_mode
    from miprometheus.seeding import derive_seed
    from miprometheus.workers.components import model_inputs
    from miprometheus.workers.model_graph import GRAPH_DEPTH, write_graph
    from miprometheus.workers.setup import set_up_split
    from miprometheus.workers.step import run_step

    spec = validate(load_config(config_paths, overrides))  # a training section and a model: what is measured
    seed = spec.training.seed if spec.training.seed != -1 else 0  # the figures do not depend on the seed
    prepared = set_up_split(spec, spec.splits["training"], "cpu", global_seed=seed,
                            data_seed=derive_seed(seed, "training"), sampler_seed=derive_seed(seed, "training-sampler"),
                            own_assets=True)
    model = prepared.model
    batch = next(iter(prepared.loader.epoch(0)))
    set_train_mode(model, spec.model.freeze)
    with measuring(model) as measurement, torch.no_grad():
        run_step(prepared.problem, model, batch, check_first=True, with_loss=False)
    report = SummaryReport(measurement.summary(prepared.precision))
    if graph_folder is not None:
        report.graph = write_graph(model, model_inputs(model, batch), graph_folder, f"{model.name}_graph",
                                   GRAPH_DEPTH if graph_depth is None else graph_depth)
    return report


__all__ = ["Measurement", "ModelSummary", "ModuleRow", "SummaryReport", "describe_output", "layer_macs", "measuring",
           "summarize"]

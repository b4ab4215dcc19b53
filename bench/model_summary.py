"""What the model summary and graph cost, on the shipped configs of LeNet-5, the NTM, MAC and the Transformer.

For each model: its training split is built once (as ``mip summary`` does), then on its first batch, in training
mode, timed as the median of ``--repeats``: a plain forward pass; the same pass under the summary's hooks (what the
first training step of every run pays, once); drawing the graph with torchview at depth 1; rendering it with
Graphviz (SVG and PNG; skipped without ``dot``); and the TensorBoard trace. Printed: one row per model, and the
totals lines of its summary. MNIST is read from MIP_MNIST_DIR (default ../shared/data/mnist, the t10k digits);
the Sort-of-CLEVR scenes and the synthetic translation corpus are generated into a temporary folder.

    python bench/model_summary.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.seeding import derive_seed
from miprometheus.workers.components import model_inputs
from miprometheus.workers.model_graph import add_tensorboard_graph, draw
from miprometheus.workers.setup import set_up_split
from miprometheus.workers.summary import measuring

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("MIP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))


def cases(scratch: Path) -> dict[str, tuple[str, list[str]]]:
    return {
        "LeNet5": ("vision/lenet5_mnist_t10k.yaml", [f"training.problem.data_folder={MNIST}"]),
        "NTM": ("memory/ntm_serial_recall.yaml", []),
        "MAC": ("vqa/mac_sort_of_clevr.yaml", [f"training.problem.data_folder={scratch / 'sort_of_clevr'}"]),
        "TransformerEncoderDecoder": ("translation/transformer_encoder_decoder_anki.yaml",
                                      [f"training.problem.data_folder={scratch / 'anki'}"]),
    }


def median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def first_batch(config: str, overrides: list[str]) -> tuple[torch.nn.Module, dict]:
    spec = validate(load_config([str(ROOT / "configs" / config)], overrides))
    prepared = set_up_split(spec, spec.splits["training"], "cpu", global_seed=0, data_seed=derive_seed(0, "training"),
                            sampler_seed=derive_seed(0, "training-sampler"), own_assets=True)
    model = prepared.model.train()
    return model, model_inputs(model, next(iter(prepared.loader.epoch(0))))


def measure(name: str, model: torch.nn.Module, inputs: dict, scratch: Path, repeats: int) -> tuple[list, list]:
    """The row of timings of one model, and its summary's totals lines."""
    from torch.utils.tensorboard import SummaryWriter

    totals: list[str] = []

    def hooked() -> None:
        with measuring(model) as measurement:
            model(inputs)
        totals[:] = measurement.summary().totals()

    with torch.no_grad():
        plain = median_ms(lambda: model(inputs), repeats)
        hooked_ms = median_ms(hooked, repeats)
    drawn = median_ms(lambda: draw(model, inputs, depth=1), repeats)
    digraph, _ = draw(model, inputs, depth=1)
    render = (median_ms(lambda: (digraph.pipe(format="svg"), digraph.pipe(format="png")), repeats)
              if shutil.which("dot") else float("nan"))
    writer = SummaryWriter(str(scratch / "tensorboard" / name))
    trace = median_ms(lambda: add_tensorboard_graph(writer, model, inputs), repeats)
    writer.close()
    return [plain, hooked_ms, drawn, render, trace], totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}; times in ms")
    print(f"{'model':<26}{'forward':>9}{'hooked':>9}{'draw':>9}{'render':>9}{'trace':>9}")
    totals = {}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for name, (config, overrides) in cases(scratch).items():
            model, inputs = first_batch(config, overrides)
            row, totals[name] = measure(name, model, inputs, scratch, args.repeats)
            print(f"{name:<26}" + "".join(f"{value:9.1f}" for value in row))
    for name, lines in totals.items():
        print(f"\n{name}:\n  " + "\n  ".join(lines))


if __name__ == "__main__":
    main()

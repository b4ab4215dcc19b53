"""Cost of the checkpoint checksum: save and load of a ~100 MB checkpoint with and without it.

A checkpoint shaped like ``model_last.pt`` (weights, Adam's two moments — a third of the size each — and
small entries) of about ``--megabytes`` MB is saved and loaded ``--repeats`` times each way:

- without: ``torch.save`` through ``files.atomic_write`` (temp file, fsync, rename); ``torch.load(weights_only=True)``;
- with: ``checkpoint.save_checkpoint`` (the same, plus the sha256 of the content) and ``checkpoint.load_checkpoint``
  (the same load, plus verifying that checksum and the ``model`` entry).

Medians in seconds, and the ratio with/without. The file goes to ``--folder`` (default: a temporary folder;
the page cache makes loads memory-bound, i.e. the ratio is the worst case of a checkpoint read from disk).

    python bench/checkpoint_checksum.py [--megabytes 100] [--repeats 5] [--folder DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from miprometheus.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from miprometheus.files import atomic_write


def make_content(megabytes: float) -> dict:
    """Weights of ~megabytes/3 and Adam's state of the same shapes (float32), as model_last.pt holds them."""
    per_part = int(megabytes * 1e6 / 3 / 4)
    shapes = [(1024, 1024)] * max(1, round(per_part / (1024 * 1024)))
    generator = torch.Generator().manual_seed(0)
    weights = {f"layer{i}.weight": torch.randn(shape, generator=generator) for i, shape in enumerate(shapes)}
    state = {i: {"step": torch.tensor(10.0), "exp_avg": torch.randn_like(w), "exp_avg_sq": torch.rand_like(w)}
             for i, w in enumerate(weights.values())}
    return {"kind": "last", "model_name": "Bench", "problem_name": "Bench", "model": weights,
            "optimizer": {"state": state, "param_groups": [{"lr": 0.001, "params": list(state)}]},
            "trainer": {"episode": 10, "epoch": 0, "batch_in_epoch": 10, "elapsed": 1.0}}


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    content = make_content(args.megabytes)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "model_last.pt"
        plain = {"format": FORMAT, "version": 1, **content}  # version 1: loaded without a checksum

        def save_plain() -> None:
            atomic_write(path, lambda handle: torch.save(plain, handle), mode="wb")

        def load_plain() -> None:
            torch.load(path, map_location="cpu", weights_only=True)

        times: dict[str, list[float]] = {"save without": [], "save with": [], "load without": [], "load with": []}
        for _ in range(args.repeats):  # interleaved, so that a slow moment of the machine hits both
            times["save without"].append(timed(save_plain))
            times["load without"].append(timed(load_plain))
            times["save with"].append(timed(lambda: save_checkpoint(path, content)))
            times["load with"].append(timed(lambda: load_checkpoint(path)))
        size = path.stat().st_size / 1e6
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"checkpoint of {size:.1f} MB (format version {VERSION}), median of {args.repeats} repeats, one thread")
    for what in ("save", "load"):
        without, with_ = median[f"{what} without"], median[f"{what} with"]
        print(f"  {what}: without checksum {without:.3f} s, with {with_:.3f} s, ratio {with_ / without:.2f}")


if __name__ == "__main__":
    main()

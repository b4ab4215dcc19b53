"""CIFAR-10 at scale: peak memory of a 224-pixel AlexNet epoch and training images per second of the vision models.

Writes a 50,000 + 10,000-image set in the official python format (random pixels and labels; content does not
matter for memory or speed) with ``cifar_format.write_cifar10``, then trains through ``mip train`` in child
processes, each measured on its own:

* AlexNet on the images resized to 224x224 (the original's input), batch 64, reading the tar.gz: the child's peak
  resident set size (os.wait4's ru_maxrss) must stay under 4 GB. A whole epoch is 704 episodes of the
  45,000-image training split (tens of minutes on a 2-core CPU); ``--episodes N`` measures its first N episodes.
  The memory that grows with the data (the split, the sampler) is all there from the first batch; what
  follows is the same loop.
* Training images per second (median of the episodes after the first 3, data loading and per-batch transforms
  included) of LeNet5 and ResNet-20 at 32 px and AlexNet at 224 px, batch 64, ``--threads`` threads.

    python bench/cifar_vision.py [--episodes 20] [--threads 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
LIMIT_GB = 4.0
MODELS = (("LeNet5", None), ("ResNet20", None), ("AlexNet", [224, 224]))


def write_set(root: Path, train: int, test: int) -> None:
    """A CIFAR-10 python-version archive of ``train`` + ``test`` random images under ``root``."""
    from miprometheus.problems.image_to_class.cifar_format import write_cifar10

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    write_cifar10(root, rng.integers(0, 256, (train, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, train),
                  rng.integers(0, 256, (test, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, test),
                  archive=True, keep_folder=False)
    size = (root / "cifar-10-python.tar.gz").stat().st_size / 2**20
    print(f"wrote {train:,} + {test:,} images in the official format ({size:.0f} MB tar.gz) in "
          f"{time.perf_counter() - started:.0f} s")


def config(workdir: Path, data: Path, model: str, resize: list[int] | None, episodes: int) -> Path:
    """A training-only experiment: CIFAR10 split [0, 45000), batch 64, Adam, ``episodes`` episodes."""
    problem = {"name": "CIFAR10", "data_folder": str(data), "use_train_data": True, "batch_size": 64,
               "download": False, "normalize": True}
    if resize:
        problem["resize"] = resize
    tree = {"training": {"problem": problem,
                         "sampler": {"name": "SubsetRandomSampler", "indices": [0, 45000]},
                         "optimizer": {"name": "Adam", "lr": 1e-4},
                         "terminal_conditions": {"episode_limit": episodes}, "seed": 1},
            "model": {"name": model}}
    path = workdir / f"{model}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def train(path: Path, workdir: Path, threads: int) -> tuple[float, Path]:
    """Run ``mip train`` in a child; its peak RSS in GB and its experiment folder (RuntimeError if it fails)."""
    expdir = workdir / f"experiments_{path.stem}"
    log = workdir / f"{path.stem}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:  # a file, not a pipe: os.wait4 does not read pipes, a full one would block
        child = subprocess.Popen([sys.executable, "-m", "miprometheus", "train", str(path), "--no-progress",
                                  "--threads", str(threads), "--expdir", str(expdir)], stdout=out, stderr=out,
                                 env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"mip train {path} failed:\n{tail}")
    folder = next(expdir.glob("*/*/*/training_statistics.csv")).parent
    return usage.ru_maxrss / 2**20, folder  # Linux reports KiB


def images_per_second(folder: Path, skip: int = 3) -> float:
    """Median training images per second over the episodes after the first ``skip`` (from the CSV's times)."""
    with open(folder / "training_statistics.csv") as handle:
        rows = list(csv.DictReader(handle))
    rates = [float(b["batch_size"]) / (float(b["time"]) - float(a["time"]))
             for a, b in zip(rows[skip:], rows[skip + 1:]) if float(b["time"]) > float(a["time"])]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20, help="training episodes per run (704 = the whole epoch)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--data", type=Path, help="an existing folder with cifar-10-python.tar.gz (else a temp one)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = options.data
        if data is None or not (data / "cifar-10-python.tar.gz").is_file():
            data = data or workdir / "cifar10"
            write_set(data, options.train_images, options.test_images)
        results = {}
        for model, resize in MODELS:
            peak, folder = train(config(workdir, data, model, resize, options.episodes), workdir, options.threads)
            results[model] = (resize, peak, images_per_second(folder))
        print(f"mip train on the CIFAR-format set, batch 64, {options.episodes} episodes, --threads {options.threads}:")
        print("  model      input     images/s   peak RSS")
        for model, (resize, peak, rate) in results.items():
            size = f"{resize[0]}x{resize[1]}" if resize else "32x32"
            print(f"  {model:<10} {size:<9} {rate:8.1f}   {peak:6.2f} GB")
        alexnet_peak = results["AlexNet"][1]
        verdict = "ok" if alexnet_peak < LIMIT_GB else "OVER"
        print(f"AlexNet at 224 px: peak {alexnet_peak:.2f} GB (limit {LIMIT_GB:.0f} GB: {verdict})")
    if alexnet_peak >= LIMIT_GB:
        sys.exit(1)


if __name__ == "__main__":
    main()

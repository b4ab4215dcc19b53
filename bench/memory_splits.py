"""Peak memory of `mip train` on MNIST with three splits of one file against a training split alone.

The training, validation and test splits of configs/vision/lenet5_mnist_t10k.yaml all read the t10k
file; they share one uint8 copy of it and convert each batch, so the three-split run must cost
less than 15 MB more than the same run with only its training split. A 224-pixel run (SimpleConvNet,
batch 64, all three splits resized per batch) shows that resizing per batch keeps memory small.

    python bench/memory_splits.py [--episodes 20] [--repeats 1] [--mnist DIR]

The MNIST t10k files are read from --mnist (default: $MIP_MNIST_DIR, else ../shared/data/mnist beside the
repository).

Each run is a child process of its own; its peak resident set size comes from os.wait4 (the
child's own ru_maxrss, not the cumulative figure of every child of this process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from miprometheus.config import load_config
from miprometheus.config.yaml_loader import dump_yaml

ROOT = Path(__file__).resolve().parents[1]
VISION = ROOT / "configs" / "vision"
DEFAULT_MNIST = Path(os.environ.get("MIP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
LIMIT_MB = 15.0
MNIST_TEST_IMAGES = 10_000


def peak_rss_mb(args: list[str], workdir: Path) -> float:
    """Run ``mip ARGS`` in a child process; its peak resident set size in MB (RunTimeError if it fails)."""
    log = workdir / "child.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        # stdout/stderr to a file, not a pipe: os.wait4 does not read pipes, a full one would block the child
        child = subprocess.Popen([sys.executable, "-m", "miprometheus", *args], stdout=out, stderr=out, env=env,
                                 cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"mip {' '.join(args)} failed ({child.returncode}):\n{tail}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def training_only_config(workdir: Path, data: str) -> Path:
    """The lenet5_mnist_t10k experiment without its validation and testing sections (same file, same training)."""
    tree = load_config([VISION / "lenet5_mnist_t10k.yaml"], [data]).tree
    tree.pop("validation")
    tree.pop("testing")
    # default_mnist.yaml's splits use interpolations, which load OmegaConf (~8 MB); one here too, so that
    # both runs load their config the same way and differ only by their splits.
    tree["description"] = "${training.problem.name}, its training split only (bench/memory_splits.py)"
    path = workdir / "lenet5_mnist_training_only.yaml"
    path.write_text(dump_yaml(tree))
    return path


def best_of(repeats: int, args: list[str], workdir: Path) -> float:
    return min(peak_rss_mb(args, workdir) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20, help="training episodes per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (the lowest peak is kept)")
    parser.add_argument("--skip-224", action="store_true", help="leave out the 224-pixel run")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST t10k files")
    options = parser.parse_args()
    data = f"training.problem.data_folder={options.mnist.resolve()}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        common = [data, "training.terminal_conditions.epoch_limit=null",
                  f"training.terminal_conditions.episode_limit={options.episodes}",
                  "--no-progress", "--threads", "1", "--expdir", str(workdir / "experiments")]
        three = best_of(options.repeats, ["train", str(VISION / "lenet5_mnist_t10k.yaml"),
                                          f"validation.interval={max(1, options.episodes // 2)}", *common], workdir)
        alone = best_of(options.repeats, ["train", str(training_only_config(workdir, data)), *common], workdir)
        difference = three - alone
        float_copy = MNIST_TEST_IMAGES * 32 * 32 * 4 / 2**20  # what each split held before (float32, resized)
        print(f"mip train lenet5_mnist_t10k.yaml, {options.episodes} episodes, --threads 1 "
              "(peak RSS, each run a child):")
        print(f"  training + validation + testing splits   {three:8.1f} MB")
        print(f"  training split only                      {alone:8.1f} MB")
        print(f"  difference                               {difference:8.1f} MB   (limit {LIMIT_MB:.0f} MB: "
              f"{'ok' if difference < LIMIT_MB else 'OVER'})")
        print(f"  (before, each split held its own float32 32x32 copy of the file: {float_copy:.0f} MB)")
        if not options.skip_224:
            size_overrides = [f"{split}.problem.{key}" for split in ("training", "validation", "testing")
                              for key in ("resize=[224,224]", "batch_size=64")]
            big = best_of(options.repeats, ["train", str(VISION / "simple_conv_net_mnist_t10k.yaml"), data,
                                            *size_overrides,
                                            "training.terminal_conditions.epoch_limit=null",
                                            "training.terminal_conditions.episode_limit=10",
                                            "validation.interval=5", "validation.num_batches=2",
                                            "--no-progress", "--threads", "1", "--expdir",
                                            str(workdir / "experiments")], workdir)
            whole = 3 * MNIST_TEST_IMAGES * 224 * 224 * 4 / 2**30
            batch = 64 * 224 * 224 * 4 / 2**20
            print("mip train simple_conv_net_mnist_t10k.yaml, resize [224, 224], batch 64, 3 splits, 10 episodes:")
            print(f"  peak RSS                                 {big:8.1f} MB   (one batch of 224x224 floats: "
                  f"{batch:.0f} MB; the three splits resized up front: {whole:.1f} GB)")
    if difference >= LIMIT_MB:
        sys.exit(1)


if __name__ == "__main__":
    main()

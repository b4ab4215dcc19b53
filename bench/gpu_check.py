"""The GPU path, checked: LeNet5 and an LSTM trained on a device in 32 and mixed precision, against the CPU.

Each model trains the same experiment (seed, data, episodes) through `mip train`'s code path: once on
the CPU in float32 (the reference), then on the device in 32, bf16 (where supported) and 16-mixed. It
passes when every run's loss falls and ends near the CPU reference; it prints the step time of each run
and the ratios CPU/device and 32/mixed. Then two experiments of a grid share the device through the
local executor's GPU tokens (0.5 GPU each), and each must have trained on it.

    bash bench/gpu_check.sh                                   # --device cuda, well under 5 minutes
    python bench/gpu_check.py --device cpu --episodes 40      # the same path without a GPU (a dry run)

LeNet5 reads the MNIST test set from --mnist (default: $MIP_MNIST_DIR, else ../shared/data/mnist beside the
repository) when its IDX files are there; otherwise it writes a small
synthetic set in the same IDX format (ten classes of noisy strokes), so the check runs on a machine that
has nothing but this repository. Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MNIST = Path(os.environ.get("MIP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))

LENET5 = """
training:
  problem: {{name: MNIST, data_folder: {data}, use_train_data: false, resize: [32, 32], batch_size: 64,
            download: false}}
  sampler: {{name: SubsetRandomSampler, indices: [0, 8000]}}
  optimizer: {{name: Adam, lr: 0.001}}
  terminal_conditions: {{episode_limit: {episodes}}}
  seed: 1
  log_interval: 100000
model: {{name: LeNet5}}
"""

LSTM = """
training:
  problem: {{name: SerialRecall, batch_size: 64, min_sequence_length: 3, max_sequence_length: 6}}
  optimizer: {{name: Adam, lr: 0.005}}
  gradient_clipping: 10
  terminal_conditions: {{episode_limit: {episodes}}}
  seed: 1
  log_interval: 100000
model: {{name: LSTM, hidden_size: 128}}
"""

GRID = """
grid_tasks:
  - name: lstm
    default_configs: lstm.yaml
grid_overwrite:
  training: {{terminal_conditions: {{episode_limit: 20}}}}
grid_settings:
  experiment_repetitions: 2
  max_concurrent_runs: 2
  gpus_per_experiment: {gpus}
"""


def write_synthetic_mnist(folder: Path, count: int = 10000, seed: int = 0) -> Path:
    """A learnable stand-in for the MNIST test set, in the official IDX format (gzip)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    prototypes = torch.zeros(10, 28, 28)
    for digit in range(10):  # a horizontal and a vertical stroke at class-dependent places
        prototypes[digit, 4 + 2 * digit: 7 + 2 * digit, 4:24] = 1.0
        prototypes[digit, 4:24, 22 - 2 * digit: 25 - 2 * digit] = 1.0
    images = prototypes[labels] * 0.8 + 0.4 * torch.rand(count, 28, 28, generator=generator)
    pixels = (images.clamp(0, 1) * 255).to(torch.uint8).numpy().tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">IIII", 2051, count, 28, 28) + pixels)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">II", 2049, count) + labels.to(torch.uint8).numpy().tobytes())
    return folder


def train_once(config: Path, device: str, precision: str, expdir: Path, threads: int | None) -> dict:
    """One experiment through the `mip train` code path; its losses and its median step time."""
    from miprometheus.statistics import read_csv
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    options = RunOptions(expdir=expdir, device=device, progress=False, log_level="WARNING", threads=threads,
                         command_line=["gpu_check", str(config), device, precision])
    result = runs.train([str(config)], [f"training.precision={precision}"], options)
    rows = read_csv(result.folder / "training_statistics.csv")
    losses = [float(r["loss"]) for r in rows]
    times = [float(r["time"]) for r in rows]
    warm = max(2, len(times) // 10)  # the first steps pay for CUDA kernels' selection and allocation
    steps = [b - a for a, b in zip(times[warm:], times[warm + 1:])]
    tenth = max(1, len(losses) // 10)
    return {"first": statistics.fmean(losses[:tenth]), "last": statistics.fmean(losses[-tenth:]),
            "step_ms": 1000 * statistics.median(steps) if steps else float("nan"), "folder": str(result.folder)}


def check_run(run: dict, reference: dict, precision: str) -> list[str]:
    """Why a run fails: its loss did not fall, or it ended far from the CPU's float32 run."""
    problems = []
    if not run["last"] < 0.9 * run["first"]:
        problems.append(f"the loss did not fall ({run['first']:.4f} -> {run['last']:.4f})")
    # Not equal: GPU kernels sum in other orders (and TF32 convolutions), mixed precision rounds more.
    relative, absolute = (0.15, 0.02) if precision == "32" else (0.3, 0.05)
    if abs(run["last"] - reference["last"]) > relative * reference["last"] + absolute:
        problems.append(f"final loss {run['last']:.4f} is far from the CPU's {reference['last']:.4f}")
    return problems


def grid_check(configs: Path, device: str, timeout: float) -> list[str]:
    """Two experiments sharing one GPU through the local executor's tokens: each must run on the GPU."""
    gpus = 0.5 if device.startswith("cuda") else 0
    grid = configs / "grid.yaml"
    grid.write_text(GRID.format(gpus=gpus))
    expdir = configs / "grid_runs"
    done = subprocess.run([sys.executable, "-m", "miprometheus", "grid", "train", str(grid), "--expdir",
                           str(expdir), "--no-progress"], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return [f"mip grid train failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}"]
    infos = [json.loads(p.read_text()) for p in expdir.rglob("run_info.json")]
    expected = "cuda" if gpus else "cpu"
    devices = [info.get("device") for info in infos]
    if len(infos) != 2 or any(d != expected for d in devices):
        return [f"grid experiments ran on {devices}, expected two on {expected}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to check (cuda, cuda:N; cpu: a dry run)")
    parser.add_argument("--episodes", type=int, default=300, help="training episodes of each run")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST IDX files")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--models", default="LeNet5,LSTM", help="which of LeNet5, LSTM to check (comma-separated)")
    parser.add_argument("--no-grid", action="store_true", help="skip the grid (GPU tokens) check")
    args = parser.parse_args(argv)

    import torch

    from miprometheus.errors import BadInputError
    from miprometheus.workers.runs import check_device

    try:
        device = check_device(args.device)
    except BadInputError as exc:
        print(f"gpu_check: {exc} (torch {torch.__version__}; --device cpu runs the same path as a dry run)")
        return 2
    on_cuda = device.startswith("cuda")
    precisions = ["32", "16-mixed"]
    if not on_cuda or torch.cuda.is_bf16_supported():
        precisions.insert(1, "bf16")
    where = torch.cuda.get_device_name(torch.device(device)) if on_cuda else "CPU"
    print(f"gpu_check: torch {torch.__version__}, device {device} ({where}), {args.episodes} episodes per run")
    started = time.perf_counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mip_gpu_check_") as tmp:
        work = Path(tmp)
        mnist = args.mnist
        if not (mnist / "t10k-images-idx3-ubyte.gz").is_file() and not (mnist / "t10k-images-idx3-ubyte").is_file():
            mnist = write_synthetic_mnist(work / "mnist")
            print(f"  LeNet5 data: synthetic IDX set ({args.mnist} has no MNIST test files)")
        else:
            print(f"  LeNet5 data: {mnist}")
        configs = {"LeNet5": LENET5.format(data=mnist, episodes=args.episodes),
                   "LSTM": LSTM.format(episodes=args.episodes)}
        configs = {name: text for name, text in configs.items() if name in args.models.split(",")}
        (work / "lstm.yaml").write_text(LSTM.format(episodes=args.episodes))  # the grid's experiment
        print(f"\n  {'model':<7} {'device':<7} {'precision':<9} {'loss first':>10} {'loss last':>10} "
              f"{'step ms':>8}  verdict")
        for model, text in configs.items():
            config = work / f"{model.lower()}.yaml"
            config.write_text(text)
            runs = {}
            plan = [("cpu", "32")] + [(device, p) for p in precisions]
            for run_device, precision in plan:
                key = (run_device, precision)
                try:
                    runs[key] = run = train_once(config, run_device, precision, work / "runs", args.threads)
                except Exception as exc:  # noqa: BLE001 - one failed run is reported, the others still run
                    failures.append(f"{model} {run_device} {precision}: {type(exc).__name__}: {exc}")
                    print(f"  {model:<7} {run_device:<7} {precision:<9} {'':>10} {'':>10} {'':>8}  FAILED: {exc}")
                    continue
                problems = check_run(run, runs[("cpu", "32")], precision) if ("cpu", "32") in runs else []
                failures += [f"{model} {run_device} {precision}: {p}" for p in problems]
                print(f"  {model:<7} {run_device:<7} {precision:<9} {run['first']:>10.4f} {run['last']:>10.4f} "
                      f"{run['step_ms']:>8.2f}  {'; '.join(problems) or 'ok'}")
            cpu, fast = runs.get(("cpu", "32")), runs.get((device, "32"))
            ratios = []
            if cpu and fast:
                ratios.append(f"CPU/{device} (32) {cpu['step_ms'] / fast['step_ms']:.2f}x")
            for precision in precisions[1:]:
                mixed = runs.get((device, precision))
                if fast and mixed:
                    ratios.append(f"32/{precision} on {device} {fast['step_ms'] / mixed['step_ms']:.2f}x")
            print(f"  {model} step time ratios: {', '.join(ratios) or 'n/a'}")
        if not args.no_grid:
            problems = grid_check(work, device, timeout=240)
            failures += [f"grid: {p}" for p in problems]
            print(f"\n  grid, 2 experiments x {'0.5 GPU' if on_cuda else 'no GPU'}: {'; '.join(problems) or 'ok'}")
    print(f"\ngpu_check: {'PASSED' if not failures else 'FAILED'} in {time.perf_counter() - started:.0f} s")
    for failure in failures:
        print(f"  - {failure}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

"""Grid scaling on this machine: 4 identical CPU experiments with max_concurrent_runs 2 vs 1.

Both grids run in this one invocation, side by side; the figure is the wall-time ratio. For
reference, the same experiments also run as bare `mip train` processes (one after the other, then
two at a time, no grid): the ceiling that this machine's two cores give to two torch processes.

    python bench/grid_scaling.py [--experiments 4] [--episodes 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_grid(folder: Path, concurrent: int, experiments: int, episodes: int, settings: str = "") -> float:
    """Seconds `mip grid train` takes over ``experiments`` runs, ``concurrent`` at a time (``settings``: more
    ``grid_settings`` lines)."""
    grid = folder / f"grid_{concurrent}.yaml"
    grid.write_text(f"""
grid_tasks:
  - default_configs: {ROOT / "configs" / "algorithmic" / "lstm_serial_recall.yaml"}
grid_overwrite:
  training: {{terminal_conditions: {{episode_limit: {episodes}}}, seed: 1}}
  validation: {{interval: null, every_epoch: false}}
grid_settings:
  experiment_repetitions: {experiments}
  max_concurrent_runs: {concurrent}
  cpus_per_experiment: 1
""" + settings)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "miprometheus", "grid", "train", str(grid), "--expdir",
                    str(folder / f"exp_{concurrent}"), "--no-progress"], check=True, capture_output=True)
    return time.perf_counter() - start


def bare(folder: Path, concurrent: int, experiments: int, episodes: int) -> float:
    """The same experiments without a grid: `concurrent` plain `mip train` processes at a time."""
    config = ROOT / "configs" / "algorithmic" / "lstm_serial_recall.yaml"
    command = [sys.executable, "-m", "miprometheus", "train", str(config),
               f"training.terminal_conditions.episode_limit={episodes}", "training.seed=1",
               "validation.interval=null", "validation.every_epoch=false",
               "--expdir", str(folder / f"bare_{concurrent}"), "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    for wave in range(0, experiments, concurrent):
        processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(min(concurrent, experiments - wave))]
        for process in processes:
            if process.wait() != 0:
                raise RuntimeError("a reference run failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        serial = run_grid(folder, 1, args.experiments, args.episodes)
        parallel = run_grid(folder, 2, args.experiments, args.episodes)
        bare_serial = bare(folder, 1, args.experiments, args.episodes)
        bare_parallel = bare(folder, 2, args.experiments, args.episodes)
    print(f"{args.experiments} identical experiments (LSTM on SerialRecall, {args.episodes} episodes, 1 thread each)")
    print(f"grid, max_concurrent_runs 1: {serial:.1f} s")
    print(f"grid, max_concurrent_runs 2: {parallel:.1f} s")
    print(f"grid speed-up: {serial / parallel:.2f} (target >= 1.8 on 2 cores)")
    print(f"reference without a grid: 1 at a time {bare_serial:.1f} s, 2 at a time {bare_parallel:.1f} s, "
          f"speed-up {bare_serial / bare_parallel:.2f} (this machine's ceiling for two torch processes)")
    print(f"grid overhead: serial {serial / bare_serial:.3f}x, parallel {parallel / bare_parallel:.3f}x the bare runs")


if __name__ == "__main__":
    main()

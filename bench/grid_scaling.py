"""Grid scaling on this machine: 4 identical CPU experiments with max_concurrent_runs 2 vs 1.

Both grids run in this one invocation, side by side; the figure is the wall-time ratio.

    python bench/grid_scaling.py [--experiments 4] [--episodes 400]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_grid(folder: Path, concurrent: int, experiments: int, episodes: int) -> float:
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
""")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "miprometheus", "grid", "train", str(grid), "--expdir",
                    str(folder / f"exp_{concurrent}"), "--no-progress"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        serial = run_grid(folder, 1, args.experiments, args.episodes)
        parallel = run_grid(folder, 2, args.experiments, args.episodes)
    print(f"{args.experiments} identical experiments (LSTM on SerialRecall, {args.episodes} episodes, 1 thread each)")
    print(f"max_concurrent_runs 1: {serial:.1f} s")
    print(f"max_concurrent_runs 2: {parallel:.1f} s")
    print(f"speed-up: {serial / parallel:.2f} (target >= 1.8 on 2 cores)")


if __name__ == "__main__":
    main()

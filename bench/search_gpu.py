"""A small search on one GPU: four trials sharing it (``gpus_per_experiment: 0.25``) against one at a time (1.0).

Prints, side by side from one run, each search's wall time and the GPU's utilisation and memory
(``nvidia-smi`` sampled every 0.5 s while it runs). The search: LSTM on serial recall, 8 trials of the
learning rate and hidden size, 400 episodes each, no pruning and no re-evaluation (so both searches run the
same 8 experiments' worth of work). Under 8 minutes on an H100; without a GPU it says so and exits 0.

    python bench/search_gpu.py [--trials 8] [--episodes 400]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GRID = """
grid_tasks:
  - {{name: lstm, default_configs: {config}}}
grid_overwrite:
  training: {{terminal_conditions: {{episode_limit: {episodes}}}, problem: {{batch_size: 64}}}}
  validation: {{interval: 100}}
grid_settings:
  max_concurrent_runs: {concurrent}
  gpus_per_experiment: {gpus}
  cpus_per_experiment: 2
  test: false
  seed: 7
  search:
    space:
      training.optimizer.lr: {{low: 1.0e-3, high: 1.0e-2, log: true}}
      model.hidden_size: {{choices: [128, 256, 512]}}
    trials: {trials}
    pruner: none
    reevaluate: {{top: 1, seeds: 0}}
"""


def sample_gpu(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """(utilisation %, memory MiB) of GPU 0 every 0.5 s until ``stop``."""
    while not stop.is_set():
        answer = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                 "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True)
        try:
            utilisation, memory = (float(x) for x in answer.stdout.strip().split(","))
            samples.append((utilisation, memory))
        except ValueError:
            pass
        stop.wait(0.5)


def run_search(folder: Path, gpus: float, concurrent: int, trials: int, episodes: int) -> tuple[float, list]:
    grid = folder / f"search_{gpus}.yaml"
    grid.write_text(GRID.format(config=ROOT / "configs" / "memory" / "lstm_serial_recall.yaml", episodes=episodes,
                                concurrent=concurrent, gpus=gpus, trials=trials))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(stop, samples), daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "miprometheus", "grid", "run", str(grid), "--expdir",
                             str(folder / f"out_{gpus}"), "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"the search with gpus_per_experiment {gpus} failed ({result.returncode})")
    return seconds, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=400)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        print("search_gpu: no CUDA GPU here (torch.cuda.is_available() is False or no nvidia-smi): nothing measured")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}; {args.trials} trials of {args.episodes} episodes each")
    print(f"{'gpus_per_experiment':>20} {'at once':>8} {'wall (s)':>9} {'GPU util mean %':>16} "
          f"{'util max %':>11} {'memory max MiB':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for gpus, concurrent in ((0.25, 4), (1.0, 1)):
            seconds, samples = run_search(Path(tmp), gpus, concurrent, args.trials, args.episodes)
            utilisation = [u for u, _ in samples] or [0.0]
            memory = [m for _, m in samples] or [0.0]
            print(f"{gpus:>20} {concurrent:>8} {seconds:>9.1f} {sum(utilisation) / len(utilisation):>16.1f} "
                  f"{max(utilisation):>11.0f} {max(memory):>15.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

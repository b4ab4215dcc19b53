"""Start-up of local grid experiments, fresh processes (cold) vs forked from the warm-start server (warm).

Two figures, cold and warm side by side in one run:
1. start-up to the first training step: from `submit` to the first row of `training_statistics.csv`
   of a one-episode LSTM/SerialRecall experiment, median of N (the warm executor's first job, which
   also starts the server, is shown apart);
2. the grid speed-up of 2 vs 1 concurrent runs (4 experiments of 300 episodes, 1 thread each, as
   `bench/grid_scaling.py` runs them), each pair repeated, with every run's figures.

    python bench/startup.py [--runs 7] [--experiments 4] [--episodes 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid_scaling import ROOT, run_grid  # noqa: E402

from miprometheus.workers.grid.executors.base import Job  # noqa: E402
from miprometheus.workers.grid.executors.local import LocalExecutor  # noqa: E402

CONFIG = ROOT / "configs" / "algorithmic" / "lstm_serial_recall.yaml"


def first_step_seconds(folder: Path, warm: bool, runs: int) -> list[float]:
    """Seconds from submit to the first training row, for ``runs`` one-episode experiments in a row."""
    executor = LocalExecutor(warm_start=warm)
    times = []
    try:
        for run in range(runs):
            name = f"{'warm' if warm else 'cold'}_{run}"
            job = Job(name, ["train", str(CONFIG), "training.terminal_conditions.episode_limit=1",
                             "validation.interval=null", "validation.every_epoch=false", "--expdir", name,
                             "--no-progress"], folder, f"logs/{name}.log")
            start = time.perf_counter()
            handle = executor.submit(job)
            while not any(csv.stat().st_size and csv.read_text().count("\n") >= 2
                          for csv in (folder / name).rglob("training_statistics.csv")):
                if executor.poll(handle) is not None:
                    raise RuntimeError(f"{name} ended before its first step; see {folder / job.log}")
                time.sleep(0.002)
            times.append(time.perf_counter() - start)
            while executor.poll(handle) is None:
                time.sleep(0.01)
    finally:
        executor.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cold = first_step_seconds(folder, False, args.runs)
        warm = first_step_seconds(folder, True, args.runs + 1)
        speedups: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
        for repeat in range(args.repeats):
            for mode in ("cold", "warm"):
                run = folder / f"grid_{mode}_{repeat}"
                run.mkdir()
                setting = f"  warm_start: {str(mode == 'warm').lower()}\n"
                serial = run_grid(run, 1, args.experiments, args.episodes, setting)
                parallel = run_grid(run, 2, args.experiments, args.episodes, setting)
                speedups[mode].append((serial, parallel))
    print(f"1. submit -> first training row, one-episode LSTM/SerialRecall (s), {args.runs} runs each")
    print(f"   cold: median {statistics.median(cold):.3f}   runs {' '.join(f'{t:.3f}' for t in cold)}")
    print(f"   warm: median {statistics.median(warm[1:]):.3f}   runs {' '.join(f'{t:.3f}' for t in warm[1:])}"
          f"   (first job, starting the server: {warm[0]:.3f})")
    print(f"2. grid of {args.experiments} experiments x {args.episodes} episodes, max_concurrent_runs 1 vs 2 "
          f"(1 thread each)")
    print("   repeat  mode  1 at a time (s)  2 at a time (s)  speed-up")
    for repeat in range(args.repeats):
        for mode in ("cold", "warm"):
            serial, parallel = speedups[mode][repeat]
            print(f"   {repeat:>6}  {mode}  {serial:15.1f}  {parallel:15.1f}  {serial / parallel:8.2f}")
    for mode in ("cold", "warm"):
        ratios = [s / p for s, p in speedups[mode]]
        print(f"   {mode} speed-up: median {statistics.median(ratios):.2f} (target >= 1.8 on 2 cores)")


if __name__ == "__main__":
    main()

"""Cost of reading a grid's status (``mip grid status``, ``--watch``, the live report.html) on a large grid.

A grid of N tiny serial-recall experiments is planned (``create_grid``: real configs and manifest), and
its experiment folders are written in the real format without training: a training CSV of
``--episodes`` rows, a validation CSV of one row per 250 episodes, run_info.json. A third have finished,
two run (the grid's lock is held by this process meanwhile), the rest are queued. Figures: the first
reading (every file read), a reading again (what cannot change is kept), the live report's status page
written by the grid process, and ``mip grid status`` as a command (start-up included). The target: a
reading again under 50 ms at 200 experiments, so that the grid process can write the page every 10 s and
a watch refresh every 2 s without being felt.

    python bench/grid_status.py [--experiments 200] [--episodes 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.05
TINY = """training:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 1, max_sequence_length: 4, size: 320}
  optimizer: {name: Adam, lr: 0.01}
  terminal_conditions: {episode_limit: EPISODES}
validation:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 4, max_sequence_length: 4, size: 64}
  interval: 250
model: {name: LSTM, hidden_size: 16}
"""


def make_grid(root: Path, experiments: int, episodes: int) -> Path:
    """A planned grid whose experiment folders hold CSVs as a training writes them."""
    from miprometheus.layout import RUN_INFO, TRAINING_CONFIG, TRAINING_CSV, VALIDATION_CSV, grid_output_dir
    from miprometheus.workers.grid.manifest import Manifest
    from miprometheus.workers.grid.runner import create_grid
    from miprometheus.workers.grid.spec import load_grid

    (root / "tiny.yaml").write_text(TINY.replace("EPISODES", str(episodes)))
    (root / "grid.yaml").write_text("grid_tasks:\n  - default_configs: tiny.yaml\ngrid_settings:\n"
                                    f"  experiment_repetitions: {experiments}\n  max_concurrent_runs: 2\n")
    manifest = create_grid(load_grid(root / "grid.yaml", validate_tasks=False), root / "exp")
    finished, now = experiments // 3, time.time()
    for index, record in enumerate(manifest.records):
        if index >= finished + 2:
            break  # queued: no folder yet
        folder = manifest.folder / grid_output_dir(record.id) / "SerialRecall" / "LSTM" / "20260101_000000"
        folder.mkdir(parents=True)
        done = episodes if index < finished else episodes // 2
        (folder / TRAINING_CONFIG).write_text((root / "tiny.yaml").read_text())
        header = "episode,epoch,loss,acc,seq_length,max_seq_length,batch_size,time\n"
        (folder / TRAINING_CSV).write_text(header + "".join(
            f"{e},{(e - 1) // 20},0.5,0.7,3.0,4.0,16.0,{e * 0.01:.4f}\n" for e in range(1, done + 1)))
        (folder / VALIDATION_CSV).write_text("episode,epoch,loss,acc\n" + "".join(
            f"{e},{(e - 1) // 20},0.4,0.8\n" for e in range(250, done + 1, 250)))
        (folder / RUN_INFO).write_text(json.dumps({"status": "completed" if index < finished else "running"}))
        relative = str(folder.relative_to(manifest.folder))
        if index < finished:
            manifest.update(record.id, status="done", attempts=1, folder=relative, started=now - 60, ended=now - 30)
        else:
            manifest.update(record.id, status="running", attempts=1, started=now - 20)
    Manifest.load(manifest.folder)
    return manifest.folder


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=2000)
    args = parser.parse_args()
    import logging

    from miprometheus.locks import FolderLock
    from miprometheus.workers.grid.analysis.live_report import LiveReport
    from miprometheus.workers.grid.status import StatusReader

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_grid(Path(tmp), args.experiments, args.episodes)
        with FolderLock(folder, "grid train"):  # the grid runs
            start = time.perf_counter()
            reader = StatusReader(folder)
            first = reader.read()
            first_s = time.perf_counter() - start
            again_s = timed(reader.read, 20)
            report = LiveReport(folder, logging.getLogger("bench"))
            page_s = timed(lambda: report._write(running=True), 10)
            command_s = timed(lambda: subprocess.run([sys.executable, "-m", "miprometheus", "grid", "status",
                                                      str(folder)], capture_output=True, check=True), 3)
        print(f"{args.experiments} experiments ({first.counts}), training CSVs of {args.episodes} rows")
        print(f"  first reading         {first_s * 1000:8.1f} ms")
        print(f"  reading again         {again_s * 1000:8.1f} ms  (median of 20; target < {TARGET_S * 1000:.0f} ms: "
              f"{'met' if again_s < TARGET_S else 'NOT met'})")
        print(f"  live status page      {page_s * 1000:8.1f} ms  (read + HTML + atomic write, median of 10)")
        print(f"  mip grid status       {command_s * 1000:8.1f} ms  (the command, start-up included, median of 3)")


if __name__ == "__main__":
    main()

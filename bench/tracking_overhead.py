"""Overhead of MLflow tracking: the same `mip train` with and without ``--mlflow``, side by side.

An MLflow tracking server is started on loopback (SQLite backend store in a temporary folder, at a low priority
as if it ran on another machine: ``--server-nice``; or ``--uri`` names one). The LSTM serial-recall config then
trains ``--episodes`` episodes (validation every ``--validation``, statistics read back and sent every
``--log-interval`` episodes) in a fresh process per run, alternating without / with tracking (ABBA order, so
neither always runs first) ``--repeats`` times. Printed: the medians of the training loop's own time (the last
``time`` of training_statistics.csv) and of the whole command (start-up, the final validation, the tracker's
final flush), and their ratios with/without; the CPU time of the command and of its MLflow sending process, which
the machine's other load does not change. At the end, the tracked runs are read back to check that every training
value arrived.

    python bench/tracking_overhead.py [--episodes 3000] [--repeats 3] [--log-interval 20] [--uri URI]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from miprometheus.layout import MLFLOW_RUN, TRAINING_CSV

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "algorithmic" / "lstm_serial_recall.yaml"


def start_server(folder: Path, niceness: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", str(folder / "art"),
                                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                               preexec_fn=lambda: os.nice(niceness))
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return process, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("the MLflow server did not start within 300 s")


def cpu_seconds() -> float:
    """CPU time of the finished child processes and theirs (a training and its MLflow sending process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(folder: Path, args: argparse.Namespace, uri: str | None) -> tuple[float, float, float, Path]:
    """One `mip train` in a fresh process: (training loop seconds, command seconds, CPU seconds, experiment folder)."""
    command = [sys.executable, "-m", "miprometheus", "train", str(CONFIG), "--expdir", str(folder), "--no-progress",
               "--threads", "1", "--log-interval", str(args.log_interval),
               f"training.terminal_conditions.episode_limit={args.episodes}", f"validation.interval={args.validation}",
               "training.seed=1"]
    if uri is not None:
        command += ["--mlflow", uri, "tracking.mlflow.experiment=tracking_overhead"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    (statistics_file,) = folder.rglob(TRAINING_CSV)
    with open(statistics_file, newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return float(last["time"]), wall, cpu, statistics_file.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3000)
    parser.add_argument("--validation", type=int, default=500, help="episodes between validations")
    parser.add_argument("--log-interval", type=int, default=20, help="episodes between read-backs (and sends)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs")
    parser.add_argument("--uri", default=None, help="an MLflow tracking URI (default: a server started here)")
    parser.add_argument("--server-nice", type=int, default=19,
                        help="niceness of the server started here: a tracker normally runs on another machine, so "
                             "its work should not count as the run's (0: it competes with the runs for the cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        server, uri = (None, args.uri) if args.uri else start_server(root, args.server_nice)
        try:
            results: dict[str, list[tuple[float, float, float, Path]]] = {"without": [], "with": []}
            for repeat in range(args.repeats):
                order = ["without", "with"] if repeat % 2 == 0 else ["with", "without"]
                for kind in order:
                    folder = root / f"{kind}_{repeat}"
                    results[kind].append(train(folder, args, uri if kind == "with" else None))
                    loop, wall, cpu, _ = results[kind][-1]
                    print(f"run {repeat + 1} {kind:>7} tracking: training loop {loop:7.2f} s, command {wall:7.2f} s, "
                          f"CPU {cpu:7.2f} s", flush=True)
            arrived = check_arrival(uri, [folder for *_, folder in results["with"]], args.episodes)
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(60)
    loops = {kind: statistics.median(r[0] for r in runs) for kind, runs in results.items()}
    walls = {kind: statistics.median(r[1] for r in runs) for kind, runs in results.items()}
    cpus = {kind: statistics.median(r[2] for r in runs) for kind, runs in results.items()}
    pairs = [with_[0] / without[0] for with_, without in zip(results["with"], results["without"])]
    print(f"\n{args.episodes} episodes, validation every {args.validation}, statistics sent every "
          f"{args.log_interval} episodes, {args.repeats} runs each (medians), "
          f"{uri if args.uri else f'a server on this machine at nice {args.server_nice}'}")
    print(f"training loop: without {loops['without']:.2f} s, with {loops['with']:.2f} s, "
          f"ratio {loops['with'] / loops['without']:.3f}")
    print(f"whole command: without {walls['without']:.2f} s, with {walls['with']:.2f} s, "
          f"ratio {walls['with'] / walls['without']:.3f}")
    print(f"training loop ratio of each pair: {', '.join(f'{ratio:.3f}' for ratio in pairs)}")
    print(f"CPU of the command and its sending process: without {cpus['without']:.2f} s, with {cpus['with']:.2f} s "
          f"(+{cpus['with'] - cpus['without']:.2f} s, ratio {cpus['with'] / cpus['without']:.3f}; the server's apart)")
    print(f"values read back: {arrived}")


def check_arrival(uri: str, folders: list[Path], episodes: int) -> str:
    """Whether every training loss of each tracked run reached MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    counts = []
    for folder in folders:
        run_id = json.loads((folder / MLFLOW_RUN).read_text())["runs"][0]["run_id"]
        counts.append(len(client.get_metric_history(run_id, "training/loss")))
    complete = all(count == episodes for count in counts)
    return f"{counts} training/loss values per run ({'all' if complete else 'NOT all'} {episodes} arrived)"


if __name__ == "__main__":
    main()

"""Overhead of the Trainer over a plain hand-written PyTorch loop: time ratio and peak memory.

The same model (LSTM), data (SerialRecall batches from the same generator) and number of steps,
once as a plain loop and once through `mip train` machinery (statistics, CSV, checkpoints on),
each in a fresh process, alternated and repeated; the figures are medians of one run side by side.

    python bench/overhead.py [--steps 400] [--repeats 5] [--threads 1] [--before CHECKOUT]

``--before CHECKOUT`` (a checkout of another version of the project, e.g. ``git worktree add /tmp/base
<commit>``) adds that version's Trainer to the same alternated run, so a change is measured side by side
with what it replaces on the same noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, LENGTH, BATCH, SEED = 128, 10, 64, 1


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain(steps: int) -> float:
    """A hand-written loop, as a researcher would write it: generate, forward, loss, step, log the loss."""
    import torch

    from miprometheus.models.recurrent.lstm import LSTM
    from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall

    start = time.perf_counter()
    torch.manual_seed(SEED)
    problem = SerialRecall(SerialRecall.Params(batch_size=BATCH, min_sequence_length=LENGTH,
                                               max_sequence_length=LENGTH))
    problem.seed(SEED)
    model = LSTM(LSTM.Params(input_item_size=10, output_item_size=8, hidden_size=HIDDEN))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        batch = problem.generate_batch(BATCH)
        optimizer.zero_grad()
        loss = problem.loss(batch, model(batch))
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 10)
        optimizer.step()
        losses.append(loss.item())
    torch.save(model.state_dict(), os.path.join(tempfile.mkdtemp(), "model.pt"))
    return time.perf_counter() - start


def trainer(steps: int) -> float:
    """The same work through the Trainer: CSV rows every episode, checkpoints, run_info, log."""
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    folder = Path(tempfile.mkdtemp())
    config = folder / "bench.yaml"
    config.write_text(f"""
training:
  problem: {{name: SerialRecall, batch_size: {BATCH}, min_sequence_length: {LENGTH},
            max_sequence_length: {LENGTH}}}
  optimizer: {{name: Adam, lr: 0.001}}
  gradient_clipping: 10
  terminal_conditions: {{episode_limit: {steps}}}
  checkpoint_interval: 100
  seed: {SEED}
model: {{name: LSTM, hidden_size: {HIDDEN}}}
""")
    start = time.perf_counter()
    runs.train([str(config)], [], RunOptions(expdir=folder / "experiments", progress=False,
                                             log_level="WARNING", command_line=["bench"]))
    return time.perf_counter() - start


def child(kind: str, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # Both pay the same imports before the clock starts: what is timed is the training, not loading Python
    # modules (the Trainer's are imported lazily by runs.train, the plain loop's inside plain()).
    import miprometheus.models.recurrent.lstm  # noqa: F401
    import miprometheus.problems.seq_to_seq.algorithmic.serial_recall  # noqa: F401
    import miprometheus.workers.callbacks  # noqa: F401
    import miprometheus.workers.runs  # noqa: F401
    import miprometheus.workers.trainer  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first optimizer imports torch._dynamo (~2 s)

    before = peak_rss_mb()
    seconds = plain(steps) if kind == "plain" else trainer(steps)
    print(json.dumps({"kind": kind, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_at_start_mb": before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["plain", "trainer"])
    parser.add_argument("--before", type=Path, default=None, metavar="CHECKOUT",
                        help="also time the Trainer of this checkout of the project, in the same run")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.threads)
        return
    kinds = ["plain", "trainer"] + (["before"] if args.before else [])
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for i in range(args.repeats):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind in order:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            if kind == "before":  # the other checkout's package first on the path
                env["PYTHONPATH"] = os.pathsep.join([str(Path(args.before).resolve()), env.get("PYTHONPATH", "")])
            out = subprocess.run([sys.executable, __file__, "--child", "plain" if kind == "plain" else "trainer",
                                  "--steps", str(args.steps), "--threads", str(args.threads)],
                                 capture_output=True, text=True, env=env, check=True)
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    t_plain = statistics.median(r["seconds"] for r in results["plain"])
    m_plain = statistics.median(r["peak_rss_mb"] for r in results["plain"])
    print(f"{args.steps} steps of LSTM({HIDDEN}) on SerialRecall (length {LENGTH}, batch {BATCH}), "
          f"{args.repeats} alternated repeats, {args.threads} thread(s)")
    print(f"plain loop : median {t_plain:.3f} s, peak RSS {m_plain:.1f} MB")
    for kind in kinds[1:]:
        label = "Trainer" if kind == "trainer" else f"Trainer of {args.before}"
        t_kind = statistics.median(r["seconds"] for r in results[kind])
        m_kind = statistics.median(r["peak_rss_mb"] for r in results[kind])
        ratios = [t["seconds"] / p["seconds"] for p, t in zip(results["plain"], results[kind])]
        print(f"{label}: median {t_kind:.3f} s, peak RSS {m_kind:.1f} MB")
        print(f"  time ratio to the plain loop: {t_kind / t_plain:.3f} (median of medians); per pair: "
              + ", ".join(f"{r:.3f}" for r in ratios) + "  (target <= 1.02)")
        print(f"  memory added: {m_kind - m_plain:+.1f} MB (target < 50 MB)")


if __name__ == "__main__":
    main()

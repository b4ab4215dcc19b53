"""Cost of generating a batch of every algorithmic task, against one LSTM training step on that batch.

Every registered problem derived from ``AlgorithmicSeqToSeqProblem`` is found through the registry
(so tasks added later are measured too) and built with its defaults, batch size 64 and every
``max_*_length`` bound at 20 (the dual tasks' secondary lengths included; other bounds such as the
number of subsequences keep their defaults). One repeat generates a batch (``generate_batch``, the
draws and the layout) and then runs one training step of an LSTM (hidden 128) on it: forward,
the problem's masked loss, backward, Adam step. Both run on one thread. The table gives medians over
the repeats; ``ratio`` is the median of generation / step per repeat (lengths are drawn, so a
repeat's two times belong together), and the target is a ratio below 5 %.

    python bench/algorithmic_generation.py [--repeats 30] [--batch-size 64] [--max-length 20] [--task NAME ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

TARGET = 0.05
HIDDEN = 128
SEED = 1


def algorithmic_tasks() -> dict[str, type | str]:
    """Every registered algorithmic task by name: its class, or why it could not be imported."""
    from miprometheus import registry
    from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem

    tasks: dict[str, type | str] = {}
    for name in registry.names("problems"):
        try:
            cls = registry.get_problem(name)
        except Exception as exc:  # a task being written right now must not stop the others' figures
            tasks[name] = f"import failed: {exc}"
            continue
        if isinstance(cls, type) and issubclass(cls, AlgorithmicSeqToSeqProblem):
            tasks[name] = cls
    return tasks


def bench_params(cls: type, batch_size: int, max_length: int) -> Any:
    """The task's default parameters with ``batch_size`` and every ``max_*_length`` bound set to ``max_length``."""
    values: dict[str, Any] = {"batch_size": batch_size}
    for field in dataclasses.fields(cls.Params):
        if field.name.startswith("max_") and field.name.endswith("_length"):
            values[field.name] = max_length
    return cls.Params(**values)


def measure(cls: type, batch_size: int, max_length: int, repeats: int) -> dict[str, float]:
    """Median generation and step times (ms), the median ratio and the mean number of steps T of one task."""
    import torch

    from miprometheus.models.recurrent.lstm import LSTM

    problem = cls(bench_params(cls, batch_size, max_length))
    problem.seed(SEED)
    torch.manual_seed(SEED)
    model = LSTM(LSTM.Params(input_item_size=problem.default_values["input_item_size"],
                             output_item_size=problem.default_values["output_item_size"], hidden_size=HIDDEN))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch: dict) -> None:
        optimizer.zero_grad()
        loss = problem.loss(batch, model(batch))
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        step(problem.generate_batch(batch_size))
    generation, training, ratios, steps = [], [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        batch = problem.generate_batch(batch_size)
        generated = time.perf_counter()
        step(batch)
        done = time.perf_counter()
        generation.append(generated - start)
        training.append(done - generated)
        ratios.append((generated - start) / (done - generated))
        steps.append(batch["sequences"].shape[1])
    return {"generation_ms": 1000 * statistics.median(generation), "step_ms": 1000 * statistics.median(training),
            "ratio": statistics.median(ratios), "mean_steps": statistics.fmean(steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per task (default 30)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=20, help="every max_*_length bound (default 20)")
    parser.add_argument("--task", action="append", default=[], help="measure only this task (repeatable)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    tasks = algorithmic_tasks()
    if args.task:
        tasks = {name: tasks.get(name, "not a registered algorithmic task") for name in args.task}
    print(f"algorithmic generation vs one LSTM step (hidden {HIDDEN}, Adam, 1 thread), batch {args.batch_size}, "
          f"max lengths {args.max_length}, medians of {args.repeats} repeats; target: generation < {TARGET:.0%}")
    header = f"{'task':32} {'mean T':>7} {'gen ms':>8} {'step ms':>8} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    missed = []
    for name, cls in sorted(tasks.items()):
        if isinstance(cls, str):
            print(f"{name:32} {cls}")
            missed.append(name)
            continue
        try:
            row = measure(cls, args.batch_size, args.max_length, args.repeats)
        except Exception as exc:  # report the task and go on with the others
            print(f"{name:32} failed: {type(exc).__name__}: {exc}")
            missed.append(name)
            continue
        meets = row["ratio"] < TARGET
        if not meets:
            missed.append(name)
        print(f"{name:32} {row['mean_steps']:7.1f} {row['generation_ms']:8.2f} {row['step_ms']:8.2f} "
              f"{row['ratio']:7.1%}  {'met' if meets else 'MISSED'}")
    print(f"{len(tasks) - len(missed)} of {len(tasks)} tasks meet the target"
          + (f"; not: {', '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()

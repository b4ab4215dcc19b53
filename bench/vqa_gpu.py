"""Relational Network and MAC on Sort-of-CLEVR at the paper's image sizes (75-128 px), on a GPU beside the CPU.

For each model: the median time of a training step (forward, backward, clipping, Adam; batch 64) on the CPU
(a few steps) and on the device, their ratio, and what a short training on the device reaches (validation
accuracy overall, relational and non-relational, over the validation split's questions). One prepared run for a
GPU machine, under 8 minutes with the defaults:

    python bench/vqa_gpu.py --device cuda                      # RN and MAC at 128 px, 4 minutes of training each
    python bench/vqa_gpu.py --device cpu --train-seconds 20    # the same path without a GPU (a dry run)

The scenes are generated (and cached) in --data-folder, a temporary folder by default. Exit code 0 when every
run trained (its training loss fell), 1 otherwise, 2 when the device does not exist.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from miprometheus.problems.assets import apply_assets, build_training_assets  # noqa: E402
from miprometheus.problems.image_text_to_class.sort_of_clevr import SortOfCLEVR  # noqa: E402
from miprometheus.registry import get  # noqa: E402

MODELS = {
    # the configs' settings (configs/vqa/*_sort_of_clevr.yaml), at the paper's g_theta width for RN
    "RelationalNetwork": {"g_theta_units": 256, "question_hidden_size": 128, "embedding_size": 32},
    "MAC": {"dim": 128, "max_step": 4, "embedding_size": 32, "image_encoder": "conv4"},
}
LR = {"RelationalNetwork": 2.5e-4, "MAC": 1e-3}


def make_problem(folder: Path, split: str, scenes: int, img_size: int, batch_size: int, assets=None):
    params = SortOfCLEVR.Params(data_folder=str(folder), split=split, num_scenes=scenes, img_size=img_size,
                                batch_size=batch_size)
    problem = SortOfCLEVR(params)
    assets = build_training_assets(problem) if assets is None else assets
    apply_assets(problem, assets)
    return problem, assets


def build_model(name: str, problem) -> torch.nn.Module:
    cls = get("models", name)
    values = {k: v for k, v in problem.default_values.items() if k in cls.Params.__dataclass_fields__}
    return cls(cls.Params(**values, **MODELS[name]))


def to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def step_times(model, problem, device: torch.device, steps: int, lr: float) -> tuple[list[float], list[float]]:
    """Seconds per training step and the losses, for ``steps`` batches of the training split."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    times, losses = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        indices = torch.randint(len(problem), (problem.batch_size,), generator=generator).tolist()
        batch = to(problem.collate_fn(indices), device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        predictions = model({k: batch[k] for k in ("images", "questions", "questions_length")})
        loss = problem.loss(batch, predictions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    return times, losses


@torch.no_grad()
def validate(model, problem, device: torch.device) -> dict[str, float]:
    model.eval()
    correct = {"acc": [0, 0], "acc_relational": [0, 0], "acc_non_relational": [0, 0]}
    relational = torch.tensor([name.startswith(("nearest", "farthest")) for name in problem.question_type_names])
    for start in range(0, len(problem), 256):
        batch = to(problem.collate_fn(list(range(start, min(start + 256, len(problem))))), device)
        right = (model({k: batch[k] for k in ("images", "questions", "questions_length")}).argmax(1)
                 == batch["answers"]).cpu()
        is_relational = relational[batch["question_types"].cpu()]
        for key, mask in (("acc", torch.ones_like(right)), ("acc_relational", is_relational),
                          ("acc_non_relational", ~is_relational)):
            correct[key][0] += int((right & mask).sum())
            correct[key][1] += int(mask.sum())
    model.train()
    return {k: total / count for k, (total, count) in correct.items() if count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--img-size", type=int, default=128, help="75-128 px: the paper's range")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-seconds", type=float, default=240.0, help="device training time per model")
    parser.add_argument("--cpu-steps", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--data-folder", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"no such device: {args.device} (torch {torch.__version__}, CUDA available: False)", file=sys.stderr)
        return 2
    folder = args.data_folder or Path(tempfile.mkdtemp(prefix="sort_of_clevr_"))
    train, assets = make_problem(folder, "train", args.scenes, args.img_size, 64)
    valid, _ = make_problem(folder, "validation", 200, args.img_size, 64, assets)
    print(f"Sort-of-CLEVR {args.img_size} px: {len(train)} training questions, {len(valid)} validation; "
          f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"CPU threads {torch.get_num_threads()}")
    ok = True
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        cpu_model = build_model(name, train)
        cpu_times, _ = step_times(cpu_model, train, torch.device("cpu"), args.cpu_steps, LR[name])
        torch.manual_seed(0)
        model = build_model(name, train).to(device)
        step_times(model, train, device, 3, LR[name])  # warm-up (kernels, allocator)
        started, times, losses = time.perf_counter(), [], []
        while time.perf_counter() - started < args.train_seconds:
            t, lo = step_times(model, train, device, 50, LR[name])
            times += t
            losses += lo
        result = validate(model, valid, device)
        cpu_step, device_step = statistics.median(cpu_times), statistics.median(times)
        first, last = statistics.mean(losses[:50]), statistics.mean(losses[-50:])
        ok &= last < first
        rows.append((name, cpu_step, device_step, len(times), first, last, result))
    print(f"\n{'model':<18} {'CPU s/step':>10} {'device s/step':>13} {'CPU/device':>10} {'steps':>6} "
          f"{'loss first→last 50':>19}  validation acc (relational, non-relational)")
    for name, cpu_step, device_step, steps, first, last, result in rows:
        print(f"{name:<18} {cpu_step:>10.3f} {device_step:>13.4f} {cpu_step / device_step:>10.1f} {steps:>6} "
              f"{first:>8.3f} → {last:<8.3f}  {result['acc']:.3f} "
              f"({result['acc_relational']:.3f}, {result['acc_non_relational']:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

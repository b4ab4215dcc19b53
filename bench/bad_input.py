"""Careless and hostile input, and faults: one representative command per class, measured.

For each case: the exit code, the wall time, the peak memory of the command (its maximum resident set,
from ``wait4``) and the first line of its message. Run it against any checkout to compare before and after:

    python bench/bad_input.py                          # this checkout
    python bench/bad_input.py --code /path/to/other    # another checkout's code (PYTHONPATH), same cases
    python bench/bad_input.py --only alias_bomb,nul    # some cases
    python bench/bad_input.py --markdown               # a table for docs/RESULTS.md

Every command runs with an address-space limit (``--memory-gib``, 4 by default) and a time limit
(``--timeout``, 60 s), so "blows memory" shows as a MemoryError or a kill and "hangs" as a timeout
rather than as a stalled machine. The inputs are generated in a temporary folder; nothing is written
elsewhere. Cases that need a trained experiment train a tiny LSTM for 20 episodes first (a few seconds).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["training.terminal_conditions.episode_limit=20", "validation.interval=10", "training.problem.batch_size=8"]


@dataclass
class Outcome:
    code: int | str
    seconds: float
    peak_mib: float
    message: str
    output: str = ""


@dataclass
class Case:
    name: str
    category: str
    what: str
    make: Callable[[Env], list[str]]  # builds the inputs, returns the mip arguments
    expect: str = "exit 2"              # what the project promises


class Env:
    """The temporary folder of one bench run, the code to run and the limits."""

    def __init__(self, root: Path, code: Path, memory_gib: float, timeout: float) -> None:
        self.root, self.code, self.memory_gib, self.timeout = root, code, memory_gib, timeout
        self.config = REPO / "configs" / "algorithmic" / "lstm_serial_recall.yaml"
        self._experiment: Path | None = None

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def run(self, args: list[str], *, fsize: int | None = None, background: bool = False):
        env = dict(os.environ, PYTHONPATH=str(self.code), OMP_NUM_THREADS="1")

        def limits() -> None:
            limit = int(self.memory_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        process = subprocess.Popen([sys.executable, "-m", "miprometheus", *args], cwd=self.root, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limits)
        if background:
            return process
        return self.wait(process)

    def wait(self, process: subprocess.Popen, timeout: float | None = None) -> Outcome:
        start = time.perf_counter()
        output = bytearray()
        reader = threading.Thread(target=lambda: output.extend(process.stdout.read()), daemon=True)
        reader.start()
        timer = threading.Timer(timeout or self.timeout, process.kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        seconds = time.perf_counter() - start
        reader.join(5)
        process.returncode = os.waitstatus_to_exitcode(status)
        code: int | str = process.returncode
        if code < 0:
            code = "timeout" if seconds >= (timeout or self.timeout) - 0.5 else f"signal {-code}"
        text = output.decode(errors="replace")
        return Outcome(code, seconds, usage.ru_maxrss / 1024, first_line(text), text)

    def experiment(self) -> Path:
        """A fresh copy of one tiny trained experiment (trained once per bench run)."""
        if self._experiment is None:
            outcome = self.run(["train", str(self.config), *TINY, "--expdir", "trained", "--no-progress"])
            found = sorted(self.root.glob("trained/*/*/*/run_info.json"))
            if outcome.code != 0 or not found:
                raise SystemExit(f"could not train the tiny experiment: {outcome}")
            self._experiment = found[0].parent
        copy = self.path(f"copies/{len(list(self.root.glob('copies/*')))}")
        shutil.copytree(self._experiment, copy)
        return copy


def first_line(text: str) -> str:
    """The line that says why: the first line of the message, without the log lines before it."""
    lines = [line for line in text.splitlines() if line.strip()]
    for at, line in enumerate(lines):
        if re.match(r"^(mip[\w -]*: )?(error|Error|internal error|Traceback)", line) or "error:" in line:
            if line.endswith(":") and at + 1 < len(lines):  # "invalid configuration:" and its first item
                line = f"{line} {lines[at + 1].strip()}"
            return line[:220]
    return (lines[-1] if lines else "(no output)")[:220]


# ---- the inputs ---------------------------------------------------------------------------------------------


def alias_bomb(env: Env) -> list[str]:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return ["check", str(env.write("bomb.yaml", "\n".join(lines) + "\n"))]


def deep_nesting(env: Env) -> list[str]:
    return ["check", str(env.write("deep.yaml", "model: " + "[" * 20000 + "]" * 20000 + "\n"))]


def chain(env: Env) -> list[str]:
    depth = 3000
    env.write("chain/c0.yaml", f"default_configs: {env.config}\n")
    for i in range(1, depth):
        env.write(f"chain/c{i}.yaml", f"default_configs: c{i - 1}.yaml\n")
    return ["check", str(env.path(f"chain/c{depth - 1}.yaml"))]


def huge_file(env: Env) -> list[str]:
    path = env.path("huge.yaml")
    with path.open("w") as out:
        out.write(f"default_configs: {env.config}\ndescription: [")
        chunk = ", ".join(["12345678"] * 1000)
        for _ in range(6000):  # ~54 MB
            out.write(chunk + ", ")
        out.write("0]\n")
    return ["check", str(path)]


def nul_bytes(env: Env) -> list[str]:
    return ["check", str(env.write("nul.yaml", f"default_configs: {env.config}\nmodel:\n  hidden_size: 1\x0028\n"))]


def symlink_loop(env: Env) -> list[str]:
    a, b = env.path("loop_a.yaml"), env.path("loop_b.yaml")
    a.symlink_to(b)
    b.symlink_to(a)
    return ["check", str(a)]


def only_dashes(env: Env) -> list[str]:
    return ["check", str(env.write("dashes.yaml", "---\n"))]


def _idx_images(count: int, rows: int, cols: int) -> bytes:
    return struct.pack(">IIII", 0x00000803, count, rows, cols)


def _mnist_config(env: Env, folder: Path) -> str:
    return str(REPO / "configs" / "vision" / "lenet5_mnist_t10k.yaml"), f"training.problem.data_folder={folder}"


def _labels(folder: Path, count: int) -> None:
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(struct.pack(">II", 0x00000801, count) + bytes(count))


def gzip_bomb(env: Env) -> list[str]:
    folder = env.path("bomb_mnist")
    folder.mkdir()
    _labels(folder, 10000)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=9) as out:
        out.write(_idx_images(10000, 28, 28))
        zeros = bytes(64 * 2**20)
        for _ in range(48):  # 3 GiB of zeros after a header that announces 7.8 MB
            out.write(zeros)
    config, override = _mnist_config(env, folder)
    return ["train", config, override, "--expdir", "out_bomb", "--no-progress"]


def zero_images(env: Env) -> list[str]:
    folder = env.path("zero_mnist")
    folder.mkdir()
    _labels(folder, 10000)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as out:
        out.write(_idx_images(10000, 0, 0))
    config, override = _mnist_config(env, folder)
    return ["train", config, override, "--expdir", "out_zero", "--no-progress"]


def yaml11_octal(env: Env) -> list[str]:
    return ["check", str(env.config), "training.terminal_conditions.episode_limit=010"]


def negative_lr(env: Env) -> list[str]:
    return ["check", str(env.config), "training.optimizer.lr=-1"]


def threads(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--threads", "100000", "--expdir", "out_threads", "--no-progress"]


def huge_hidden(env: Env) -> list[str]:
    return ["check", str(env.config), "model.hidden_size=10000000"]


def plateau_every_episode(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--expdir", "out_plateau", "--no-progress",
            "training.scheduler={name: ReduceLROnPlateau, step_every: episode}"]


def lbfgs(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--expdir", "out_lbfgs", "--no-progress",
            "training.optimizer={name: LBFGS, lr: 1}"]


def empty_checkpoint(env: Env) -> list[str]:
    folder = env.experiment()
    (folder / "models" / "model_last.pt").write_bytes(b"")
    return ["train", "--resume", str(folder), "--no-progress"]


def corrupt_run_info(env: Env) -> list[str]:
    folder = env.experiment()
    (folder / "run_info.json").write_text("[]")
    return ["train", "--resume", str(folder), "--no-progress"]


def expdir_is_file(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--expdir", str(env.write("a_file", "x")), "--no-progress"]


def savetag_slash(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--savetag", "a/../../b", "--expdir", "out_tag", "--no-progress"]


def equals_in_name(env: Env) -> list[str]:
    text = f"default_configs: {env.config}\ntraining: {{optimizer: {{lr: 0.1}}}}\n"
    return ["check", str(env.write("lr=0.1.yaml", text))]


def bit_flip(env: Env) -> list[str]:
    folder = env.experiment()
    checkpoint = folder / "models" / "model_last.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x10
    checkpoint.write_bytes(bytes(data))
    return ["train", "--resume", str(folder), "training.terminal_conditions.episode_limit=30", "--no-progress"]


def infinite_lr(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--expdir", "out_inf", "--no-progress", "training.optimizer.lr=.inf"]


def nan_step(env: Env) -> list[str]:
    # Adam with eps 0 divides 0 by 0 in its first step: the weights and the loss become NaN during the run
    return ["train", str(env.config), *TINY, "--expdir", "out_inf", "--no-progress",
            "training.optimizer={name: Adam, lr: 0.01, eps: 0}"]


def file_size_limit(env: Env) -> list[str]:
    return ["train", str(env.config), *TINY, "--expdir", "out_fsize", "--no-progress"]


def grid_with_resume(env: Env) -> list[str]:
    grid = env.write("grid.yaml", f"grid_tasks:\n  - default_configs: {env.config}\n")
    folder = env.path("not_a_grid")
    folder.mkdir()
    return ["grid", "train", str(grid), "--resume", str(folder)]


CASES = [
    Case("alias_bomb", "YAML without bound", "9 levels of 9 aliases (387M nodes)", alias_bomb),
    Case("deep_nesting", "YAML without bound", "20,000 nested lists", deep_nesting),
    Case("chain", "YAML without bound", "a default_configs chain 3,000 files deep", chain),
    Case("huge_file", "YAML without bound", "a 54 MB config", huge_file),
    Case("nul", "bytes", "a NUL byte in a config", nul_bytes),
    Case("symlink_loop", "bytes", "a symlink loop as the config", symlink_loop),
    Case("only_dashes", "bytes", "a config holding only ---", only_dashes),
    Case("gzip_bomb", "bytes", "IDX header of 10k 28x28 images over 3 GiB of zeros (gzip)", gzip_bomb),
    Case("zero_images", "bytes", "IDX header announcing 0x0 images", zero_images),
    Case("yaml11_octal", "YAML 1.1", "episode_limit=010 (YAML 1.1: 8; YAML 1.2: 10)", yaml11_octal,
         expect="exit 0, read as 10"),
    Case("negative_lr", "values", "training.optimizer.lr=-1", negative_lr),
    Case("threads", "values", "--threads 100000", threads),
    Case("huge_hidden", "values", "model.hidden_size=10^7", huge_hidden),
    Case("plateau", "components", "ReduceLROnPlateau stepped every episode", plateau_every_episode,
         expect="exit 0 (stepped at validations) or exit 2"),
    Case("lbfgs", "components", "the LBFGS optimizer (needs a closure)", lbfgs),
    Case("empty_checkpoint", "damaged folders", "resume with a zero-byte model_last.pt", empty_checkpoint),
    Case("run_info_list", "damaged folders", "resume with run_info.json holding []", corrupt_run_info),
    Case("grid_and_resume", "damaged folders", "a grid file together with --resume", grid_with_resume),
    Case("expdir_file", "output places", "--expdir that is a file", expdir_is_file),
    Case("savetag_slash", "output places", "--savetag a/../../b", savetag_slash),
    Case("equals_name", "valid input refused", "a config named lr=0.1.yaml", equals_in_name, expect="exit 0"),
    Case("bit_flip", "faults", "resume after one bit flipped in model_last.pt", bit_flip),
    Case("infinite_lr", "faults", "lr: .inf (non-finite weights)", infinite_lr,
         expect="exit 2, or exit 1 and no non-finite checkpoint"),
    Case("nan_step", "faults", "Adam with eps 0 (NaN weights mid-run)", nan_step,
         expect="exit 1 and no non-finite checkpoint"),
    Case("file_size_limit", "faults", "a 64 KiB file-size limit (RLIMIT_FSIZE)", file_size_limit,
         expect="exit 1 naming the cause"),
]


def measure(case: Case, env: Env) -> tuple[Outcome, str]:
    args = case.make(env)
    outcome = env.run(args, fsize=64 * 1024 if case.name == "file_size_limit" else None)
    note = ""
    if case.name == "yaml11_octal":
        match = re.search(r"episode_limit: (\S+)", outcome.output)
        note = f"read as {match.group(1)}" if match else ""
    if case.name in ("infinite_lr", "nan_step"):
        import torch  # only here: the bench itself starts fast

        bad = []
        for checkpoint in env.root.glob("out_inf/**/models/*.pt"):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            weights = state.get("model", {}) if isinstance(state, dict) else {}
            if any(not torch.isfinite(t).all() for t in weights.values() if hasattr(t, "dtype")
                   and t.dtype.is_floating_point):
                bad.append(checkpoint.name)
        note = f"non-finite weights written: {', '.join(bad)}" if bad else "no non-finite checkpoint"
    return outcome, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose miprometheus runs the cases")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory-gib", type=float, default=4.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mip_bad_input_") as tmp:
        env = Env(Path(tmp), args.code.resolve(), args.memory_gib, args.timeout)
        for case in chosen:
            outcome, note = measure(case, env)
            rows.append((case, outcome, note))
            if not args.markdown:
                print(f"{case.name:<17} exit {outcome.code!s:<8} {outcome.seconds:6.2f} s {outcome.peak_mib:7.0f} MiB"
                      f"  {outcome.message}{'  [' + note + ']' if note else ''}", flush=True)
    if args.markdown:
        print(f"code: {args.code.resolve()}\n")
        print("| class | input | expected | exit | s | peak MiB | message |\n|---|---|---|---|---|---|---|")
        for case, o, note in rows:
            message = (o.message + (f" [{note}]" if note else "")).replace("|", "\\|")
            print(f"| {case.category} | {case.what} | {case.expect} | {o.code} | {o.seconds:.2f} | {o.peak_mib:.0f} "
                  f"| {message} |")


if __name__ == "__main__":
    main()

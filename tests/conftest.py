"""Shared test fixtures: run the `mip` command, small configs, the shared MNIST data."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
#: the real MNIST t10k files (the shipped configs read ~/data/mnist; tests and benchmarks override data_folder)
SHARED_MNIST = Path(os.environ.get("MIP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))

# Two torch processes with two threads each on two cores slow each other down by orders of
# magnitude (OpenMP spin-waits); tests use one thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_mip(*args: str, cwd: Path | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m miprometheus ARGS` and capture its output."""
    result = subprocess.run([sys.executable, "-m", "miprometheus", *map(str, args)], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"mip {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start_mip(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "miprometheus", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


TINY_SERIAL = """
training:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 1, max_sequence_length: 4, size: 320}
  optimizer: {name: Adam, lr: 0.01}
  gradient_clipping: 10
  terminal_conditions: {episode_limit: 60}
  seed: 7
validation:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 4, max_sequence_length: 4, size: 64}
  interval: 20
testing:
  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 4, max_sequence_length: 4, size: 64}
model: {name: LSTM, hidden_size: 16}
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A seconds-long LSTM/SerialRecall experiment config."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SERIAL)
    return path


def wait_job(executor, handle: object, timeout: float = 60, interval: float = 0.2):
    """Poll an executor's job until it ends; its JobResult."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = executor.poll(handle)
        if result is not None:
            return result
        time.sleep(interval)
    raise AssertionError(f"job {handle} still running after {timeout} s")


def experiment_dirs(expdir: Path) -> list[Path]:
    return sorted(p.parent for p in expdir.rglob("training_configuration.yaml"))


@pytest.fixture
def tiny_model():
    """``TinyVQA`` (tests/clevr_fixtures.py) registered for one test; the registry is put back afterwards."""
    from miprometheus import registry
    from tests.clevr_fixtures import tiny_vqa_model

    before = {kind: dict(names) for kind, names in registry._registered.items()}
    registry.register_model(tiny_vqa_model())
    yield "TinyVQA"
    for kind, names in before.items():
        registry._registered[kind].clear()
        registry._registered[kind].update(names)


@pytest.fixture(scope="session")
def blank_mnist(tmp_path_factory) -> Path:
    """A folder holding the four official MNIST files at their official sizes (60,000 and 10,000 blank digits,
    labels 0-9 in turn): configs on the standard splits check against it without the real files or a download."""
    folder = tmp_path_factory.mktemp("blank_mnist")
    for prefix, count in (("train", 60_000), ("t10k", 10_000)):
        images = struct.pack(">IIII", 2051, count, 28, 28) + bytes(count * 28 * 28)
        labels = struct.pack(">II", 2049, count) + bytes(i % 10 for i in range(count))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images, compresslevel=1, mtime=0))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels, compresslevel=1, mtime=0))
    return folder

"""One experiment's folder, log and run record, and building its components from a validated spec."""

from __future__ import annotations

import getpass
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus import __version__
from miprometheus.config.experiment import ExperimentSpec, Split, finalize_model_params
from miprometheus.config.yaml_loader import dump_yaml
from miprometheus.data import check_values, handshake
from miprometheus.errors import ConfigError, HandshakeError
from miprometheus.files import atomic_write_json, atomic_write_text, create_unique_dir, timestamp
from miprometheus.layout import RUN_INFO, TRAINER_LOG, TRAINING_CONFIG


@dataclass
class RunOptions:
    """Settings of a run that come from the command line, not from the config."""

    expdir: Path = Path("experiments")
    savetag: str = ""
    device: str = "cpu"
    tensorboard: int | None = None
    log_level: str = "INFO"
    log_interval: int | None = None
    progress: bool | None = None  # None: a progress bar when the console is a terminal
    threads: int | None = None
    visualize: int | str | None = None  # --visualize: None (off), a number of samples, or "window"
    command_line: list[str] = field(default_factory=lambda: list(sys.argv))


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(path: Path) -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD", cwd=path)
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", cwd=path))}


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    return {"python": platform.python_version(), "miprometheus": __version__, "torch": torch.__version__,
            "numpy": numpy.__version__}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Experiment:
    """An experiment folder (DESIGN §6): its log, its run_info.json, its files."""

    def __init__(self, folder: Path, options: RunOptions, log_name: str = TRAINER_LOG) -> None:
        self.folder = folder
        self.options = options
        self.run_info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._git_thread: threading.Thread | None = None
        self.logger = logging.getLogger(f"miprometheus.experiment.{id(self)}")
        self.logger.setLevel(getattr(logging, options.log_level.upper(), logging.INFO))
        self.logger.propagate = False
        file_handler = logging.FileHandler(folder / log_name)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        self.logger.handlers = [file_handler, console]

    @classmethod
    def create(cls, spec: ExperimentSpec, options: RunOptions, split: str = "training") -> Experiment:
        problem = spec.splits[split].problem_cls.__name__
        model = spec.model_cls.__name__ if spec.model_cls else "NoModel"
        name = timestamp() + (f"_{options.savetag}" if options.savetag else "")
        folder = create_unique_dir(Path(options.expdir) / problem / model, name)
        return cls(folder, options)

    def save_config(self, tree: dict[str, Any], name: str = TRAINING_CONFIG) -> None:
        atomic_write_text(self.folder / name, dump_yaml(tree))

    def start_run_info(self, seed: int, device: str, kind: str = "training") -> None:
        package_dir = Path(__file__).resolve().parents[2]
        self.run_info = {
            "kind": kind, "status": "running", "command_line": self.options.command_line, "cwd": os.getcwd(),
            "seed": seed, "git": None,
            "versions": package_versions(), "host": socket.gethostname(), "user": _user(),
            "platform": platform.platform(), "device": device, "start_time": now(), "end_time": None,
            "termination_cause": None, "resumes": [],
        }
        self.write_run_info()
        # git takes tens of milliseconds: record it in the background, not before the first episode
        cwd = Path.cwd()
        self._git_thread = threading.Thread(target=lambda: self.write_run_info(
            git={"package": git_info(package_dir), "cwd": git_info(cwd)}), daemon=True)
        self._git_thread.start()

    def load_run_info(self) -> None:
        import json

        path = self.folder / RUN_INFO
        self.run_info = json.loads(path.read_text()) if path.exists() else {}

    def write_run_info(self, **updates: Any) -> None:
        with self._lock:
            self.run_info.update(updates)
            atomic_write_json(self.folder / RUN_INFO, self.run_info)

    def wait_for_background(self) -> None:
        """Let the background git query finish: forking (DataLoader workers) while a thread holds a lock
        can leave the forked worker deadlocked."""
        if self._git_thread is not None:
            self._git_thread.join()

    def close(self) -> None:
        self.wait_for_background()
        for handler in self.logger.handlers:
            handler.close()
        self.logger.handlers = []


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def build_problem(split: Split) -> Any:
    try:
        return split.problem_cls(split.problem_params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{split.name}.problem ({split.problem_cls.__name__}): {exc}") from None


def build_model(spec: ExperimentSpec, problem: Any) -> Any:
    """The model, with the problem's values filled in, after the handshake with the problem."""
    params = finalize_model_params(spec, problem.default_values)
    try:
        model = spec.model_cls(params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model ({spec.model_cls.__name__}): {exc}") from None
    handshake(problem.name, problem.output_definitions, problem.prediction_definitions,
              model.name, model.input_definitions, model.output_definitions)
    return model


def check_first_batch(problem: Any, model: Any, batch: dict[str, Any], predictions: Any) -> None:
    """DESIGN §4.3: the first real batch and output are checked against the definitions."""
    check_values(f"the first batch of problem {problem.name}", batch, problem.output_definitions)
    check_values(f"the output of model {model.name}", {"predictions": predictions}, model.output_definitions)


def check_declared_statistics(problem: Any, statistics: dict[str, Any]) -> None:
    """The statistics of the first batch are among those the problem declared (they fix the CSV columns)."""
    undeclared = [name for name in statistics if name not in problem.statistic_definitions]
    if undeclared:
        raise HandshakeError(f"problem {problem.name} returns statistics {', '.join(map(repr, undeclared))} that its "
                             "statistic_definitions do not declare (declared: "
                             f"{', '.join(problem.statistic_definitions) or 'none'})")


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Only the batch keys the model declares as inputs: a model cannot read ``targets`` by accident
    (a decoder trained with teacher forcing declares them)."""
    return {key: batch[key] for key in model.input_definitions if key in batch}


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """The batch's tensors on ``device``. From pinned memory (the loaders pin when the device is CUDA) the
    copy is asynchronous and overlaps the previous step; from pageable memory it is simply synchronous.
    Only host-to-device copies are made this way, which CUDA orders before the kernels that read them."""
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}

"""One experiment's folder: its log, its run record (run_info.json) and its saved config."""

from __future__ import annotations

import getpass
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus import __version__
from miprometheus.config.experiment_spec import ExperimentSpec
from miprometheus.config.yaml_loader import dump_yaml
from miprometheus.errors import BadInputError
from miprometheus.files import atomic_write_json, atomic_write_text, create_unique_dir, timestamp
from miprometheus.layout import EXPDIR, RUN_INFO, TRAINER_LOG, TRAINING_CONFIG
from miprometheus.locks import FolderLock


@dataclass
class RunOptions:
    """Settings of a run that come from the command line, not from the config."""

    expdir: Path = Path(EXPDIR)
    savetag: str = ""
    device: str = "cpu"
    tensorboard: int | None = None
    log_level: str = "INFO"
    log_interval: int | None = None
    progress: bool | None = None  # None: a progress bar when the console is a terminal
    threads: int | None = None
    visualize: int | str | None = None  # --visualize: None (off), a number of samples, or "window"
    hparams: list[str] = field(default_factory=list)  # --hparams: config keys TensorBoard's HParams tab shows
    graph: bool = False  # --graph: the model's graph in the experiment folder
    graph_depth: int | None = None  # --graph-depth: levels of nested modules drawn (None: model_graph.GRAPH_DEPTH)
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


def read_run_info(folder: Path) -> dict[str, Any]:
    """An experiment's run_info.json ({} when there is none); damaged (not JSON, not an object) is bad input."""
    path = Path(folder) / RUN_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is damaged: it is not valid JSON ({exc}). Repair it (it is the run's record: "
                            "command line, seed, status) or delete it; nothing was written.") from None
    if not isinstance(info, dict):
        raise BadInputError(f"{path} is damaged: it holds a JSON {type(info).__name__}, not the run's record "
                            "(an object); repair or delete it; nothing was written.")
    return info


class ExperimentFolder:
    """An experiment folder (DESIGN §6): its log, its run_info.json, its files."""

    def __init__(self, folder: Path, options: RunOptions, log_name: str = TRAINER_LOG) -> None:
        self.folder = folder
        self.options = options
        self.run_info: dict[str, Any] = {}
        self.folder_lock: FolderLock | None = None  # held while a run trains in the folder (hold_lock)
        self._incomplete = False  # a new folder not resumable yet: removed by discard()
        self._lock = threading.Lock()
        self._git_thread: threading.Thread | None = None
        self.logger = logging.getLogger(f"miprometheus.experiment.{id(self)}")
        self.logger.setLevel(getattr(logging, options.log_level.upper(), logging.INFO))
        self.logger.propagate = False
        file_handler = _LogFileHandler(folder / log_name)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        self.logger.handlers = [file_handler, console]

    @classmethod
    def create(cls, spec: ExperimentSpec, options: RunOptions, split: str = "training") -> ExperimentFolder:
        """A new experiment folder, incomplete (removed by :meth:`discard`) until :meth:`complete`."""
        problem = spec.splits[split].problem_cls.__name__
        model = spec.model.cls.__name__ if spec.model else "NoModel"
        name = timestamp() + (f"_{options.savetag}" if options.savetag else "")
        experiment = cls(create_unique_dir(Path(options.expdir) / problem / model, name), options)
        experiment._incomplete = True
        return experiment

    def complete(self) -> Path:
        """Say that the new folder holds what it must (a training run's: what ``--resume`` needs); its path."""
        self._incomplete = False
        return self.folder

    def discard(self) -> None:
        """Remove a new folder that was never completed (setting it up failed or was interrupted)."""
        if self._incomplete:
            self.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def hold_lock(self, what: str = "training") -> None:
        """Take the folder's lock (``locks.py``) for this run; BadInputError names the process holding it."""
        self.folder_lock = FolderLock(self.folder, what).acquire()

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
        self.run_info = read_run_info(self.folder)

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
        if self.folder_lock is not None:
            self.folder_lock.release()


class _LogFileHandler(logging.FileHandler):
    """The experiment's log file. A line that cannot be written (a full disk) is dropped without the
    traceback logging prints by default: the run's own writes report the full disk, naming their file."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

"""The grid manifest: every experiment's status, attempts, folder and log, updated atomically."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.errors import ConfigError
from miprometheus.files import atomic_write_json
from miprometheus.layout import MANIFEST

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
#: the phases of a grid with a search (``grid_settings.search``); an ordinary grid's experiments have none
SEARCH, REEVALUATION = "search", "reevaluation"
#: the state of a search trial, as told to its Optuna study (RUNNING while its experiment trains or waits)
PRUNED = "pruned"


@dataclass
class ExperimentRecord:
    """One experiment of the grid, as the manifest records it (paths relative to the grid folder)."""

    id: str
    task: str
    repetition: int
    sweep: dict[str, Any]
    seed: int
    config: str  # the experiment's config file
    config_hash: str
    status: str = PENDING
    attempts: int = 0
    folder: str | None = None  # the experiment folder, once it exists
    log: str | None = None
    exit_code: int | None = None
    last_error: str | None = None
    started: float | None = None
    ended: float | None = None
    test_status: str = PENDING
    test_attempts: int = 0
    test_folder: str | None = None
    test_log: str | None = None
    test_exit_code: int | None = None
    test_last_error: str | None = None
    #: with a search: "search" (a trial) or "reevaluation" (a best trial's configuration on a fresh seed)
    phase: str | None = None
    #: the trial's number in its task's Optuna study (a re-evaluation: the trial it re-trains)
    trial: int | None = None
    #: the sampled parameters, dotted config key -> value (a re-evaluation: the trial's)
    params: dict[str, Any] = field(default_factory=dict)
    #: a trial's state as told to the study: running, done, pruned or failed
    search_state: str | None = None
    #: the objective the trial reported (its best validation value of the objective statistic)
    objective: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Manifest:
    """``manifest.json`` of a grid folder; every change is written atomically (temp file + rename)."""

    def __init__(self, folder: Path, records: list[ExperimentRecord], info: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.records = records
        self.info = info
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    def save(self) -> None:
        with self._lock:
            atomic_write_json(self.path, {"grid": self.info, "experiments": [asdict(r) for r in self.records]})

    def get(self, experiment_id: str) -> ExperimentRecord:
        for record in self.records:
            if record.id == experiment_id:
                return record
        raise KeyError(experiment_id)

    def update(self, experiment_id: str, **changes: Any) -> ExperimentRecord:
        record = self.get(experiment_id)
        for key, value in changes.items():
            setattr(record, key, value)
        self.save()
        return record

    def counts(self, attribute: str = "status") -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            value = getattr(record, attribute)
            counts[value] = counts.get(value, 0) + 1
        return counts

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{folder} is not a grid folder (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
            records = [ExperimentRecord(**r) for r in data["experiments"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is corrupt: {exc}") from None
        return cls(Path(folder), records, data.get("grid", {}))


def now() -> float:
    return time.time()

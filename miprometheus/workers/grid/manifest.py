"""The grid manifest: every experiment's status, attempts, folder and log, updated atomically."""

from __future__ import annotations

import dataclasses
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
        """Read a grid folder's manifest; ConfigError (exit 2) naming the file and what is wrong when it is damaged."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{folder} is not a grid folder (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise _damaged(path, f"it is not JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("experiments"), list):
            raise _damaged(path, "it must be an object with an 'experiments' list")
        info = data.get("grid", {})
        if not isinstance(info, dict):
            raise _damaged(path, f"'grid' must be an object, not {type(info).__name__}")
        records = []
        for index, raw in enumerate(data["experiments"]):
            problem = _record_problem(raw)
            if problem:
                raise _damaged(path, f"experiment {index}: {problem}")
            records.append(ExperimentRecord(**raw))
        return cls(Path(folder), records, info)


_STATUSES = (PENDING, RUNNING, DONE, FAILED)
#: the JSON types each kind of annotation of ExperimentRecord admits
_JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,),
                                            "None": (type(None),)}


def _record_problem(raw: Any) -> str | None:
    """What is wrong with one manifest entry (None: it makes a valid ExperimentRecord)."""
    if not isinstance(raw, dict):
        return f"must be an object, not {type(raw).__name__}"
    fields = {f.name: f for f in dataclasses.fields(ExperimentRecord)}
    unknown = [key for key in raw if key not in fields]
    if unknown:
        return f"unknown field(s) {', '.join(map(repr, unknown))}"
    missing = [name for name, f in fields.items() if name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        return f"missing field(s) {', '.join(map(repr, missing))}"
    for key, value in raw.items():
        kinds = [kind.strip().split("[")[0] for kind in str(fields[key].type).split("|")]
        allowed = tuple(t for kind in kinds for t in _JSON_TYPES.get(kind, (object,)))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return f"{key!r} is {value!r}, not {fields[key].type}"
    for key in ("status", "test_status"):
        if key in raw and raw[key] not in _STATUSES:
            return f"{key!r} is {raw[key]!r}, not one of {', '.join(_STATUSES)}"
    return None


def _damaged(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path} is damaged: {what}. The grid folder was left as it is; a manifest is written only "
                       "by the grid process, so restore it from a copy or run the grid file again as a new grid")


def now() -> float:
    return time.time()

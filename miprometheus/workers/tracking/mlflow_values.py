"""What an experiment sends to MLflow, as plain values: parameters, metric entries, run states, the run record.

The live sender (``mlflow_sender.py``) and the upload of a finished folder build their requests from these
functions, so a run logged live and one uploaded afterwards hold the same keys. Nothing here imports MLflow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from miprometheus.files import atomic_write_json
from miprometheus.layout import MLFLOW_RUN
from miprometheus.workers.grid.analysis.collect import flatten

#: the run id of a grid's parent run, which the grid passes to each experiment it starts (the run is nested in it)
PARENT_RUN_ENV = "MIP_MLFLOW_PARENT_RUN_ID"
#: tags (a JSON object) the grid gives an experiment's run: its id in the grid, a search trial's phase and number
RUN_TAGS_ENV = "MIP_MLFLOW_TAGS"

# MLflow's limits (mlflow.utils.validation): longer values are cut, larger batches split
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
METRICS_PER_REQUEST = 1000
PARAMS_PER_REQUEST = 100

#: the tag that nests a run in another (MLflow's own name)
PARENT_TAG = "mlflow.parentRunId"
#: the commit a run's code came from (MLflow's own name, shown by its UI)
GIT_COMMIT_TAG = "mlflow.source.git.commit"

#: the MLflow run status of each run_info.json status: a stopped run that --resume continues is KILLED until then
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED",
              "running": "RUNNING"}


class MetricEntry(NamedTuple):
    """One value of one metric: its key, value, time (milliseconds since the epoch) and step (the episode)."""

    key: str
    value: float
    timestamp: int
    step: int


def now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)  # null, true, 0.001, [1, 2]: as a config reads them back
    except (TypeError, ValueError):
        return str(value)


def config_params(tree: Mapping[str, Any]) -> dict[str, str]:
    """An effective configuration as MLflow parameters: every leaf by its dotted key (``collect.flatten``, as the
    grid's tables name them), its value as text (cut to MLflow's length). The ``tracking`` section is where the run
    goes, not what it is: it is left out."""
    flat = flatten({key: value for key, value in tree.items() if key != "tracking"})
    return {key[:MAX_KEY_LENGTH]: _text(value)[:MAX_PARAM_LENGTH] for key, value in flat.items()}


def metric_entries(split: str, row: Mapping[str, Any], step: int, timestamp: int | None = None,
                   skip: Iterable[str] = ("episode",)) -> list[MetricEntry]:
    """The numbers of one statistics row as metrics ``<split>/<name>`` at ``step`` (a cell left empty, a statistic
    absent from that row, is not sent; NaN is: MLflow keeps it)."""
    timestamp = now_ms() if timestamp is None else timestamp
    skipped = set(skip)
    entries = []
    for name, value in row.items():
        if name in skipped:
            continue
        number = as_number(value)
        if number is not None:
            entries.append(MetricEntry(f"{split}/{name}"[:MAX_KEY_LENGTH], number, timestamp, int(step)))
    return entries


def as_number(value: Any) -> float | None:
    """A statistic as a float (text from a CSV too), or None for an empty cell or anything not a number."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def training_entries(rows: Iterable[Mapping[str, Any]], timestamp: int | None = None) -> list[MetricEntry]:
    """Training rows (one per episode) as metrics ``training/<name>``, each at its episode."""
    timestamp = now_ms() if timestamp is None else timestamp
    return [entry for row in rows for entry in metric_entries("training", row, int(float(row["episode"])), timestamp)]


def run_status(status: str | None) -> str:
    """The MLflow status of a run whose run_info.json says ``status``."""
    return RUN_STATUS.get(status or "", "FAILED")


# ------------------------------------------------------------------------------------------ the run record


def _read_record(folder: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((Path(folder) / MLFLOW_RUN).read_text())
    except (OSError, ValueError):
        return []
    runs = data.get("runs") if isinstance(data, dict) else None
    return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []


def recorded_run(folder: Path, uri: str, experiment: str) -> str | None:
    """The id of the run ``folder`` (an experiment or a grid) logs to at ``uri`` in ``experiment``, if it has one."""
    for run in _read_record(folder):
        if run.get("uri") == uri and run.get("experiment") == experiment and isinstance(run.get("run_id"), str):
            return run["run_id"]
    return None


def record_run(folder: Path, uri: str, experiment: str, run_id: str) -> None:
    """Remember in ``folder/mlflow_run.json`` that it logs to ``run_id`` at ``uri`` in ``experiment`` (one run per
    destination: a folder uploaded to a second server keeps both)."""
    runs = [run for run in _read_record(folder) if (run.get("uri"), run.get("experiment")) != (uri, experiment)]
    runs.append({"uri": uri, "experiment": experiment, "run_id": run_id})
    atomic_write_json(Path(folder) / MLFLOW_RUN, {"runs": runs})

"""A grid in MLflow: a parent run nesting its experiments' runs, and folders uploaded after the fact (DESIGN §8).

The grid process (``GridRunner``) opens one parent run per MLflow destination that its experiments' configs
name (``tracking.mlflow``) and gives each experiment it starts the parent's run id and the experiment's tags
(its id in the grid, its task, a search trial's phase, number and state) through the environment; the
experiment's own process creates its run, nested in the parent. When an experiment ends, the parent's sender
sets its final tags (a trial's state as told to its study, its objective) on the experiment's run.

For clusters whose workers cannot reach the tracker, :func:`log_to_mlflow` (``mip grid log-to-mlflow``) uploads
a finished grid, or experiment folders, afterwards: it sends only what the runs lack, so it may run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miprometheus.config.sections import MlflowTracking
from miprometheus.errors import BadInputError, MipError
from miprometheus.layout import (
    ANALYSIS_CSV,
    GRID_CONFIG,
    MANIFEST,
    PLOTS_DIR,
    REPORT_HTML,
    RUN_INFO,
    SEARCH_SUMMARY_CSV,
    SUMMARY_CSV,
    TRAINING_CONFIG,
)
from miprometheus.workers.grid.analysis.collect import read_json, read_yaml
from miprometheus.workers.grid.folders import experiment_folders
from miprometheus.workers.grid.manifest import ExperimentRecord, Manifest
from miprometheus.workers.tracking.mlflow_values import (
    PARAMS_PER_REQUEST,
    PARENT_RUN_ENV,
    PARENT_TAG,
    RUN_TAGS_ENV,
    MetricEntry,
    config_params,
    now_ms,
    record_run,
    recorded_run,
    run_status,
)

#: seconds the grid waits for its parent run before it starts the first experiment logging to that destination;
#: experiments started while it does not exist yet (a tracker down) are not nested
PARENT_WAIT_SECONDS = 30.0
#: MLflow's HTTP settings for an upload when the user has not set them: a few tries per request, then an error
UPLOAD_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def read_destination(config: Path) -> MlflowTracking | None:
    """The ``tracking.mlflow`` section of an experiment config the grid wrote (checked when the grid was planned)."""
    tree = read_yaml(config)
    try:
        values = tree["tracking"]["mlflow"]
        known = {f.name for f in dataclasses.fields(MlflowTracking)}
        return MlflowTracking(**{key: value for key, value in values.items() if key in known})
    except (KeyError, TypeError, AttributeError, ValueError):  # no tracking section: the experiment is not tracked
        return None


def grid_run_tags(grid: Path, record: ExperimentRecord) -> dict[str, str]:
    """The tags of a grid experiment's run: the grid, its id there, its task; a search's phase, trial and state."""
    values = {"mip.grid": Path(grid).name, "mip.grid_experiment": record.id, "mip.task": record.task,
              "mip.repetition": record.repetition, "mip.phase": record.phase, "mip.trial": record.trial,
              "mip.search_state": record.search_state, "mip.objective": record.objective}
    return {key: str(value) for key, value in values.items() if value is not None}


def _grid_params(grid: Path) -> dict[str, str]:
    tree = read_yaml(grid / GRID_CONFIG)
    return config_params(tree) if isinstance(tree, dict) else {}


def _grid_tags(grid: Path) -> dict[str, str]:
    return {"mip.kind": "grid", "mip.grid": grid.name, "mip.folder": str(grid.resolve())}


@dataclass
class _Parent:
    settings: MlflowTracking
    sender: Any  # MlflowSender
    waited: bool = False


class GridTracking:
    """The grid process's side of MLflow tracking (train phase): the parent runs and the tags of their children."""

    def __init__(self, folder: Path, logger: logging.Logger) -> None:
        self.folder = Path(folder)
        self.logger = logger
        self._parents: dict[tuple[str, str], _Parent] = {}
        self._unnested = False

    def _parent(self, settings: MlflowTracking) -> _Parent:
        from miprometheus.workers.tracking.mlflow_sender import MlflowSender

        key = (settings.uri, settings.experiment)
        if key not in self._parents:
            sender = MlflowSender(settings.uri, settings.experiment, run_name=self.folder.name, folder=self.folder,
                                  run_id=recorded_run(self.folder, *key), tags=_grid_tags(self.folder),
                                  start_time=now_ms(), logger=self.logger)
            sender.log_params(_grid_params(self.folder))
            self._parents[key] = _Parent(settings, sender)
        return self._parents[key]

    def job_env(self, record: ExperimentRecord) -> dict[str, str]:
        """The environment of an experiment's job: its parent run's id and its tags (nothing when it is not tracked).

        The first job of a destination waits for the parent run, up to :data:`PARENT_WAIT_SECONDS`."""
        settings = read_destination(self.folder / record.config)
        if settings is None:
            return {}
        env = {RUN_TAGS_ENV: json.dumps(grid_run_tags(self.folder, record))}
        parent = self._parent(settings)
        run_id = parent.sender.wait_for_run(0 if parent.waited else PARENT_WAIT_SECONDS)
        parent.waited = True
        if run_id is not None:
            env[PARENT_RUN_ENV] = run_id
        elif not self._unnested:
            self._unnested = True
            self.logger.warning("the grid's MLflow run at %s does not exist yet: experiments started meanwhile log "
                                "runs of their own, not nested in it (mip grid log-to-mlflow %s nests them later)",
                                settings.uri, self.folder)
        return env

    def ended(self, record: ExperimentRecord) -> None:
        """An experiment's training ended (a trial's state told to its study): its run gets its final grid tags."""
        settings = read_destination(self.folder / record.config)
        if settings is None or record.folder is None:
            return
        self._parent(settings).sender.tag_run_of(self.folder / record.folder, grid_run_tags(self.folder, record))

    def close(self, manifest: Manifest, interrupted: bool) -> None:
        """End the parent runs: the experiments' statuses as metrics, the grid's configuration and manifest as files."""
        counts = manifest.counts("status")
        for parent in self._parents.values():
            sender = parent.sender
            sender.log_metrics([MetricEntry(f"grid/{status}", float(count), now_ms(), 0)
                                for status, count in counts.items()])
            for name in (GRID_CONFIG, MANIFEST):
                sender.log_artifact(self.folder / name)
            sender.end("KILLED" if interrupted else "FINISHED")
            sender.close(parent.settings.flush_timeout)
        self._parents.clear()


def log_analysis(folder: Path, logger: logging.Logger) -> None:
    """Add a grid's analysis (tables, report, plots) to the parent runs it has (``mip grid run``, after ``analyze``)."""
    from miprometheus.workers.tracking.mlflow_sender import MlflowSender

    manifest = Manifest.load(folder)
    destinations = {(s.uri, s.experiment): s for s in (read_destination(folder / r.config) for r in manifest.records)
                    if s is not None}
    for (uri, experiment), settings in destinations.items():
        run_id = recorded_run(folder, uri, experiment)
        if run_id is None:
            continue
        sender = MlflowSender(uri, experiment, folder=folder, run_id=run_id, reopen=False, logger=logger)
        for name in (ANALYSIS_CSV, SUMMARY_CSV, SEARCH_SUMMARY_CSV, REPORT_HTML):
            sender.log_artifact(folder / name)
        sender.log_artifact(folder / PLOTS_DIR, PLOTS_DIR)
        sender.close(settings.flush_timeout)


# ------------------------------------------------------------------------------------- upload after the fact


@dataclass
class UploadReport:
    """What ``log_to_mlflow`` did: the runs brought level with their folders and the metric values it sent."""

    runs: int = 0
    values: int = 0
    run_ids: dict[str, str] = dataclasses.field(default_factory=dict)  # folder -> run id


def _client(uri: str) -> Any:
    for key, value in UPLOAD_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _upload_run(client: Any, folder: Path, settings: MlflowTracking, name: str, tags: dict[str, str],
                start_time: int | None) -> str:
    """The run ``folder`` records for this destination, or a new one (recorded in the folder)."""
    from miprometheus.workers.tracking.mlflow_engine import existing_run, experiment_id

    run_id = recorded_run(folder, settings.uri, settings.experiment)
    if run_id is not None and existing_run(client, run_id) is not None:
        return run_id
    run = client.create_run(experiment_id(client, settings.uri, settings.experiment), start_time=start_time,
                            tags=tags, run_name=name)
    record_run(folder, settings.uri, settings.experiment, run.info.run_id)
    return run.info.run_id


def _upload_experiment(client: Any, folder: Path, settings: MlflowTracking, grid_tags: dict[str, str],
                       report: UploadReport) -> None:
    from mlflow.entities import RunTag

    from miprometheus.workers.tracking.mlflow_folders import (
        folder_artifacts,
        folder_tags,
        sync_run,
        tests_as_artifacts,
        time_ms,
    )

    run_info = read_json(folder / RUN_INFO)
    tags = {**folder_tags(folder), **grid_tags}
    name = grid_tags.get("mip.grid_experiment", folder.name)
    run_id = _upload_run(client, folder, settings, name, tags, time_ms(run_info.get("start_time")))
    report.values += sync_run(client, run_id, folder)
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    for path, artifact_path in [*folder_artifacts(folder), *tests_as_artifacts(folder)]:
        (client.log_artifacts if path.is_dir() else client.log_artifact)(run_id, str(path), artifact_path)
    status = run_info.get("status")
    if status and status != "running":
        _terminate(client, run_id, run_status(status), time_ms(run_info.get("end_time")))
    report.runs += 1
    report.run_ids[str(folder)] = run_id


def _destination(config: Path, uri: str | None, experiment: str | None) -> MlflowTracking | None:
    """Where a folder goes: the command line's URI and experiment, else its config's ``tracking.mlflow``."""
    found = read_destination(config)
    if uri is None and found is None:
        return None
    named = experiment or (found.experiment if found is not None else None)
    return MlflowTracking(uri=uri or found.uri, **({"experiment": named} if named else {}))


def log_to_mlflow(folder: Path, uri: str | None = None, experiment: str | None = None,
                  report: Callable[[str], None] = print) -> UploadReport:
    """Upload a grid folder (a parent run, each experiment nested in it) or a folder of experiments to MLflow: each
    run gets what its folder holds and the run lacks (parameters, statistics as metrics, tags, files, its end).

    ``uri``/``experiment``: where to (default: each config's ``tracking.mlflow``). A folder whose destination is
    unknown is bad input, found before anything is sent."""
    import importlib.util

    folder = Path(folder)
    if importlib.util.find_spec("mlflow") is None:
        raise BadInputError("mip grid log-to-mlflow needs MLflow, which is not installed: "
                            "pip install miprometheus[mlflow]")
    try:
        if uri is not None:
            MlflowTracking(uri=uri, **({"experiment": experiment} if experiment is not None else {}))
    except ValueError as exc:
        raise BadInputError(f"--mlflow {uri}: {exc}") from None
    manifest = Manifest.load(folder) if (folder / MANIFEST).is_file() else None
    if manifest is not None:
        planned = [(folder / r.folder, r, _destination(folder / r.config, uri, experiment))
                   for r in manifest.records if r.folder is not None and (folder / r.folder).is_dir()]
    else:
        planned = [(f, None, _destination(f / TRAINING_CONFIG, uri, experiment)) for f in experiment_folders(folder)]
    if not planned:
        raise BadInputError(f"{folder} holds no experiment folder to upload")
    unknown = [str(f) for f, _, settings in planned if settings is None]
    if unknown:
        raise BadInputError(f"no MLflow destination for {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}: "
                            "their configs have no tracking.mlflow section; give one with --mlflow URI")
    uploaded = UploadReport()
    clients: dict[str, Any] = {}
    parents: dict[tuple[str, str], str] = {}
    try:
        for experiment_folder, record, settings in planned:
            client = clients.setdefault(settings.uri, _client(settings.uri))
            grid_tags: dict[str, str] = {}
            if manifest is not None:
                key = (settings.uri, settings.experiment)
                if key not in parents:
                    parents[key] = _upload_grid(client, folder, settings)
                grid_tags = {**grid_run_tags(folder, record), PARENT_TAG: parents[key]}
            _upload_experiment(client, experiment_folder, settings, grid_tags, uploaded)
            report(f"{experiment_folder}: run {uploaded.run_ids[str(experiment_folder)]} at {settings.uri}")
        for (uri_, _), run_id in parents.items():
            _finish_grid(clients[uri_], folder, run_id, manifest)
    except MipError:
        raise
    except Exception as exc:
        from miprometheus.errors import RunFailed

        raise RunFailed(f"the upload to MLflow stopped ({type(exc).__name__}: {' '.join(str(exc).split())[:500]}); "
                        f"{uploaded.runs} run(s) were complete. Run it again: it sends only what is missing") from None
    return uploaded


def _upload_grid(client: Any, folder: Path, settings: MlflowTracking) -> str:
    from mlflow.entities import Param

    run_id = _upload_run(client, folder, settings, folder.name, _grid_tags(folder), None)
    present = client.get_run(run_id).data.params
    params = [Param(k, v) for k, v in _grid_params(folder).items() if k not in present]
    for start in range(0, len(params), PARAMS_PER_REQUEST):
        client.log_batch(run_id, params=params[start:start + PARAMS_PER_REQUEST])
    return run_id


def _finish_grid(client: Any, folder: Path, run_id: str, manifest: Manifest) -> None:
    from mlflow.entities import Metric

    stamp = now_ms()
    client.log_batch(run_id, metrics=[Metric(f"grid/{status}", float(count), stamp, 0)
                                      for status, count in manifest.counts("status").items()])
    for name in (GRID_CONFIG, MANIFEST, ANALYSIS_CSV, SUMMARY_CSV, SEARCH_SUMMARY_CSV, REPORT_HTML):
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))
    if (folder / PLOTS_DIR).is_dir():
        client.log_artifacts(run_id, str(folder / PLOTS_DIR), PLOTS_DIR)
    _terminate(client, run_id, "FINISHED", None)


def _terminate(client: Any, run_id: str, status: str, end_time: int | None) -> None:
    """End a run, without the links MLflow prints on the standard output (the upload names each run itself)."""
    with contextlib.redirect_stdout(io.StringIO()):
        client.set_terminated(run_id, status, end_time)

"""An experiment folder as MLflow values, and an MLflow run brought level with its folder (DESIGN §8).

The live tracking (its tags, and a resumed run that lacks what an earlier process could not send) and
``mip grid log-to-mlflow`` (a folder uploaded after the fact) read a folder here: the parameters of its
effective configuration, the tags of its run record, its statistics as metrics, the files to upload.
Nothing here imports MLflow: the functions that send take a client.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from miprometheus.layout import (
    ASSETS,
    BEST,
    RUN_INFO,
    TESTING_AGG_CSV,
    TESTING_CONFIG,
    TRAINING_CONFIG,
    TRAINING_CSV,
    VALIDATION_CSV,
    VISUALIZATIONS_DIR,
)
from miprometheus.workers.grid.analysis.collect import read_json, read_rows, read_yaml
from miprometheus.workers.grid.folders import finished_tests
from miprometheus.workers.tracking.mlflow_values import (
    GIT_COMMIT_TAG,
    METRICS_PER_REQUEST,
    PARAMS_PER_REQUEST,
    MetricEntry,
    as_number,
    config_params,
    metric_entries,
    now_ms,
)


def folder_params(folder: Path) -> dict[str, str]:
    """The experiment's effective configuration as MLflow parameters."""
    tree = read_yaml(Path(folder) / TRAINING_CONFIG)
    return config_params(tree) if isinstance(tree, dict) else {}


def folder_tags(folder: Path) -> dict[str, str]:
    """The tags of an experiment's run, from its config and run record: problem, model, seed, folder, host, the git
    commit (MLflow's own tag) once known, and how training ended once it has."""
    folder = Path(folder)
    config, run_info = read_yaml(folder / TRAINING_CONFIG), read_json(folder / RUN_INFO)
    config = config if isinstance(config, dict) else {}
    problem = ((config.get("training") or config.get("testing") or {}).get("problem") or {}).get("name")
    values = {"mip.kind": "experiment", "mip.problem": problem, "mip.model": (config.get("model") or {}).get("name"),
              "mip.seed": run_info.get("seed"), "mip.folder": str(folder.resolve()), "mip.host": run_info.get("host"),
              "mip.termination_cause": run_info.get("termination_cause"),
              "mlflow.note.content": config.get("description")}
    git = run_info.get("git") if isinstance(run_info.get("git"), dict) else {}
    package = git.get("package") if isinstance(git.get("package"), dict) else {}
    if package.get("commit"):
        values.update({GIT_COMMIT_TAG: package["commit"], "mip.git_commit": package["commit"],
                       "mip.git_dirty": package.get("dirty")})
    return {key: str(value) for key, value in values.items() if value is not None}


def time_ms(text: Any) -> int | None:
    """A time of run_info.json (``start_time``, ``end_time``) in milliseconds since the epoch, as MLflow counts."""
    try:
        return int(datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000)
    except ValueError:
        return None


def tested_episode(folder: Path, test: Path) -> int:
    """The training episode of the weights a test tested (the best or the last checkpoint's): its metrics' step."""
    run_info = read_json(Path(folder) / RUN_INFO)
    config = read_yaml(test / TESTING_CONFIG)
    testing = config.get("testing") if isinstance(config, dict) else None
    checkpoint = str(testing.get("checkpoint", "")) if isinstance(testing, dict) else ""
    episode = run_info.get("best_episode") if checkpoint.endswith(BEST) else run_info.get("episodes")
    return episode if isinstance(episode, int) else 0


def folder_metrics(folder: Path, until_episode: int | None = None) -> list[MetricEntry]:
    """Everything an experiment folder measured, as the live run logs it: ``training/<name>`` per episode,
    ``validation/<name>`` per validation, ``test/[<setting>/]<name>`` per newest test of each setting (at the episode
    of the weights tested). Times come from the run record and the ``time`` column; ``until_episode``: only steps
    up to it."""
    folder = Path(folder)
    start = time_ms(read_json(folder / RUN_INFO).get("start_time")) or now_ms()
    entries: list[MetricEntry] = []
    seconds: dict[int, float] = {}
    for row in read_rows(folder / TRAINING_CSV):
        episode, elapsed = as_number(row.get("episode")), as_number(row.get("time"))
        if episode is None or (until_episode is not None and episode > until_episode):
            continue
        seconds[int(episode)] = elapsed or 0.0
        entries += metric_entries("training", row, int(episode), start + int(1000 * (elapsed or 0.0)))
    for row in read_rows(folder / VALIDATION_CSV):
        episode = as_number(row.get("episode"))
        if episode is None or (until_episode is not None and episode > until_episode):
            continue
        entries += metric_entries("validation", row, int(episode), start + int(1000 * seconds.get(int(episode), 0.0)))
    if until_episode is None:
        newest: dict[str | None, Path] = {}
        for test in finished_tests(folder):  # oldest first: the newest test of a setting wins
            newest[None if test.parent == folder else test.name] = test  # a named setting's own folder
        for setting, test in newest.items():
            rows = read_rows(test / TESTING_AGG_CSV)
            if rows:
                stamp = int(os.path.getmtime(test / TESTING_AGG_CSV) * 1000)
                entries += metric_entries("test" if setting is None else f"test/{setting}", rows[-1],
                                          tested_episode(folder, test), stamp)
    return entries


def folder_artifacts(folder: Path) -> list[tuple[Path, str | None]]:
    """The files of an experiment a run keeps (path, folder in the run's artifacts): the effective config, the run
    record, the assets, the figures of --visualize; the uploaded files of tests come with their test folders."""
    folder = Path(folder)
    found = [(folder / name, None) for name in (TRAINING_CONFIG, RUN_INFO, ASSETS) if (folder / name).is_file()]
    if (folder / VISUALIZATIONS_DIR).is_dir():
        found.append((folder / VISUALIZATIONS_DIR, VISUALIZATIONS_DIR))
    return found


def tests_as_artifacts(folder: Path) -> list[tuple[Path, str]]:
    """Every test run of an experiment folder, as a folder of the run's artifacts named like it."""
    tests = {test if test.parent == folder else test.parent for test in finished_tests(folder)}
    return [(test, test.name) for test in sorted(tests)]


def sync_run(client: Any, run_id: str, folder: Path, until_episode: int | None = None) -> int:
    """Send to an MLflow run what ``folder`` holds and the run lacks: parameters it does not have, and metric values
    at steps it has none for (so sending twice sends nothing twice). The number of metric values sent."""
    from mlflow.entities import Metric, Param

    run = client.get_run(run_id)
    params = [Param(key, value) for key, value in folder_params(folder).items() if key not in run.data.params]
    for start in range(0, len(params), PARAMS_PER_REQUEST):
        client.log_batch(run_id, params=params[start:start + PARAMS_PER_REQUEST])
    by_key: dict[str, list[MetricEntry]] = {}
    for entry in folder_metrics(folder, until_episode):
        by_key.setdefault(entry.key, []).append(entry)
    missing: list[MetricEntry] = []
    for key, entries in by_key.items():
        logged = ({metric.step for metric in client.get_metric_history(run_id, key)} if key in run.data.metrics
                  else set())
        missing += [entry for entry in entries if entry.step not in logged]
    for start in range(0, len(missing), METRICS_PER_REQUEST):
        client.log_batch(run_id, metrics=[Metric(e.key, e.value, e.timestamp, e.step)
                                          for e in missing[start:start + METRICS_PER_REQUEST]])
    return len(missing)

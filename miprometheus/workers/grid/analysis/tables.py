"""The tables: one row per experiment (``load``, ``grid_analysis.csv``) and the summary over repetitions.

Column names (those of ``grid_analysis.csv``, stable across versions):

- ``id``, ``task``, ``repetition``, ``status`` (grids; ``status`` of a plain experiment is its run_info's);
- the config keys that differ between experiments, dotted (``training.optimizer.lr``); ``seed``, ``model``,
  ``problem`` (``model.name``, ``training.problem.name``);
- ``val_<statistic>``: the best validation's mean statistics (the ones ``model_best.pt`` was chosen by);
- ``test_<statistic>``: the newest standard test; ``test[<what it changed>]_<statistic>`` the newest test
  of each other test setting (``mip test DIR testing.problem.max_sequence_length=20`` gives
  ``test[max_sequence_length=20]_acc``); each named setting of ``testing.settings`` gives
  ``test[<setting>]_<statistic>`` (``test[length_20]_acc``);
- ``best_episode``, ``episodes``, ``wall_time_s``, ``termination_cause``, (grids:) ``attempts``,
  ``test_status``, ``last_error``; ``folder``;
- a grid with a search (``grid_settings.search``) also has ``phase`` (``search``: a trial, ``reevaluation``:
  the best trial's configuration on a fresh seed), ``trial`` (its number in the task's Optuna study; a
  re-evaluation's is the trial it re-trains), ``state`` (a trial's as told to its study: running, done,
  pruned, failed; a re-evaluation's is its status) and ``objective`` (the trial's best validation value of
  the objective statistic), after ``status``; every sampled parameter is one of the parameter columns,
  named by its dotted key, even where all trials drew the same value.

A statistic that only some experiments have (``acc_relational`` of one problem) is empty (NaN) elsewhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from miprometheus.workers.grid.analysis.collect import (
    SETTING_KEY,
    CollectedExperiment,
    Collection,
    canonical,
    collect,
    read_curves,
)
from miprometheus.workers.grid.manifest import DONE, FAILED, SEARCH

if TYPE_CHECKING:
    import pandas as pd

# Config keys with a column of their own (seed, model, problem), so not listed again as parameters.
OWN_COLUMNS = {"training.seed": "seed", "model.name": "model", "training.problem.name": "problem"}
# Columns of the statistics files that are bookkeeping, not results.
NOT_STATISTICS = {"episode", "epoch", "time", "samples_aggregated", "episodes_aggregated"}
AGGREGATE_SUFFIXES = ("_min", "_max", "_std")
VALIDATION_PREFIX, TEST_PREFIX = "val_", "test_"
# Columns only a grid's manifest can fill.
MANIFEST_COLUMNS = ("task", "repetition", "attempts", "test_status", "last_error")
# Columns only a grid with a search has (after ``status``).
SEARCH_COLUMNS = ("phase", "trial", "state", "objective")
# The statistic shown beside the loss (second plot panel, console column), first one present wins. These and
# the loss are results: kept in the summary even where every experiment has the same value (a ceiling reached).
MAIN_STATISTICS = ("acc", "accuracy", "bleu", "f1", "top1", "precision", "recall")
_COLUMN_PREFIX = re.compile(r"^(val_|test_|test\[[^\]]*\]_)")


def statistic_name(column: str) -> str:
    """The statistic a val_/test_ column holds: ``test[heldout_beam]_bleu`` -> ``bleu``."""
    return _COLUMN_PREFIX.sub("", column, count=1)


def is_result(column: str) -> bool:
    """The loss, a main statistic or an accuracy of some kind (``sentence_accuracy``, ``acc_relational``)."""
    name = statistic_name(column)
    return (name == "loss" or name in MAIN_STATISTICS or name.endswith(("_accuracy", "_acc"))
            or name.startswith(("acc_", "accuracy_")))


@dataclass
class Table:
    """One row per experiment, as Python values (None when empty), and what its columns are."""

    rows: list[dict[str, Any]]
    columns: list[str]
    params: list[str]  # the differing config keys (dotted), and with a search every sampled one
    statistics: list[str]  # the val_/test_ statistic columns, in column order
    search: bool = False  # a grid with a search: rows have the SEARCH_COLUMNS

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame: whole-number columns as nullable integers, numbers as floats, NaN when empty."""
        return typed_frame(self.rows, self.columns)


def typed_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows of Python values (None when empty) as a DataFrame typed like ``load``'s (Int64, float64, object)."""
    import pandas as pd

    return pd.DataFrame({column: _series([row.get(column) for row in rows]) for column in columns}, columns=columns)


def _series(values: list[Any]) -> pd.Series:
    import pandas as pd

    present = [v for v in values if v is not None]
    numeric = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if present and len(numeric) == len(present):
        if all(isinstance(v, int) for v in numeric):
            return pd.Series(values, dtype="Int64")  # stays 30, not 30.0, beside an empty cell
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series(values, dtype=object)


# ------------------------------------------------------------------------------------------ the columns


def differing_keys(experiments: list[CollectedExperiment]) -> list[str]:
    """The config keys whose values differ between experiments, in config order.

    A key is compared only between the experiments that have it: a key missing from some because
    their sub-config is absent (or because only the grid's sparse config exists yet) is no difference.
    Nor is a key the grid set to the folder of the experiment one started after (``after_folder_keys``,
    ``model.init_from.path``): it differs in every repetition by construction, like the seed, and would
    split the repetitions of one task into groups of one.
    """
    import pandas as pd

    folders = {key for e in experiments if e.record is not None for key in e.record.extra.get("after_folder_keys", [])}

    def is_folder(key: str) -> bool:
        return any(key == f or key.startswith(f + ".") for f in folders)

    values = pd.DataFrame([{k: canonical(v) for k, v in e.flat.items() if k not in OWN_COLUMNS and not is_folder(k)}
                           for e in experiments])
    if values.empty:
        return []
    return [str(key) for key in values.columns[values.nunique(dropna=True) > 1]]


def is_search(collection: Collection) -> bool:
    """Whether a grid searched: some experiment of its manifest is a trial or a re-evaluation."""
    return any(e.record is not None and e.record.phase is not None for e in collection.experiments)


def parameter_keys(experiments: list[CollectedExperiment]) -> list[str]:
    """The parameter columns: the differing config keys, then the sampled keys not among them (each once).

    A sampled parameter is a column even when every trial so far drew the same value: it is what the
    search varies, and a notebook selects it by its dotted key.
    """
    keys = differing_keys(experiments)
    sampled = [key for e in experiments if e.record is not None for key in e.record.params]
    return list(dict.fromkeys([*keys, *sampled]))


def _search_cells(experiment: CollectedExperiment) -> dict[str, Any]:
    """A grid experiment's phase, trial, state and objective (a re-evaluation's state is its status)."""
    record = experiment.record
    if record is None or record.phase is None:
        return dict.fromkeys(SEARCH_COLUMNS)
    state = record.search_state if record.phase == SEARCH else record.status
    return {"phase": record.phase, "trial": record.trial, "state": state, "objective": record.objective}


def _means(statistics_row: Any) -> dict[str, Any]:
    """The mean statistics of an aggregated row (no _min/_max/_std, no bookkeeping columns)."""
    if not isinstance(statistics_row, dict):
        return {}
    keys = set(statistics_row)
    means = {}
    for key, value in statistics_row.items():
        if key in NOT_STATISTICS:
            continue
        if key.endswith(AGGREGATE_SUFFIXES) and key[:-4] in keys:
            continue
        means[key] = value
    return means


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def _wall_time(experiment: CollectedExperiment) -> float | None:
    info, record = experiment.run_info, experiment.record
    start, end = _parse_time(info.get("start_time")), _parse_time(info.get("end_time"))
    if start is not None and end is not None:
        try:
            return (end - start).total_seconds()
        except TypeError:  # one naive, one aware
            pass
    if record is not None and record.started is not None and record.ended is not None:
        return round(record.ended - record.started, 3)
    return None


def _display(value: Any) -> Any:
    """A config value as a table cell: lists and dicts as JSON, scalars as they are."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix that still tells each key apart (labels stay readable)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(other == suffix or other.endswith("." + suffix) for other in keys) == 1:
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


def format_value(value: Any) -> str:
    """A cell or label value as short text (4 significant digits for floats, empty for None)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _test_prefixes(experiments: list[CollectedExperiment]) -> dict[str, str]:
    """Each test setting's column prefix: ``test_`` for the standard test, ``test[<what changed>]_`` for others."""
    settings = {canonical(t.setting): t.setting for e in experiments for t in e.tests}
    short = short_names(sorted({key for setting in settings.values() for key in setting}))
    prefixes = {}
    for key, setting in settings.items():
        if set(setting) == {SETTING_KEY}:  # a named test setting: test[length_20]_acc
            prefixes[key] = f"test[{setting[SETTING_KEY]}]_"
            continue
        changed = ",".join(f"{short[k]}={format_value(_display(v))}" for k, v in sorted(setting.items()))
        prefixes[key] = f"test[{changed}]_" if setting else TEST_PREFIX
    return prefixes


def _row(experiment: CollectedExperiment, params: list[str], prefixes: dict[str, str],
         search: bool = False) -> tuple[dict[str, Any], list[str]]:
    """An experiment's row, and its statistic columns in the order found."""
    record, info, flat = experiment.record, experiment.run_info, experiment.flat
    row: dict[str, Any] = {"id": experiment.id}
    if record is not None:
        row.update(task=record.task, repetition=record.repetition, status=record.status)
    else:
        row["status"] = info.get("status")
    if search:
        row.update(_search_cells(experiment))
    # A sampled value the config does not hold yet (a trial not started) is the manifest's.
    sampled = record.params if record is not None else {}
    row.update({key: _display(flat[key] if key in flat else sampled.get(key)) for key in params})
    seed = info.get("seed", flat.get("training.seed"))
    row["seed"] = seed if seed is not None or record is None else record.seed
    row["model"] = flat.get("model.name")
    row["problem"] = flat.get("training.problem.name")
    statistics = {f"{VALIDATION_PREFIX}{k}": v for k, v in _means(info.get("best_validation_statistics")).items()}
    # The standard test first, then the other test settings.
    for test in sorted(experiment.tests, key=lambda t: bool(t.setting)):
        prefix = prefixes[canonical(test.setting)]
        statistics.update({f"{prefix}{k}": v for k, v in _means(test.statistics).items()})
    row.update(statistics)
    row["best_episode"] = info.get("best_episode")
    row["episodes"] = info.get("episodes")
    row["wall_time_s"] = _wall_time(experiment)
    row["termination_cause"] = info.get("termination_cause")
    if record is not None:
        row.update(attempts=record.attempts, test_status=record.test_status, last_error=record.last_error)
    row["folder"] = experiment.relative
    return row, list(statistics)


def experiment_table(collection: Collection) -> Table:
    """The table of a grid or an experiments folder: identity, parameters, statistics (loss first), facts."""
    experiments = collection.experiments
    search = is_search(collection)
    params = parameter_keys(experiments) if search else differing_keys(experiments)
    prefixes = _test_prefixes(experiments)
    rows, found = [], []
    for experiment in experiments:
        row, statistics = _row(experiment, params, prefixes, search)
        rows.append(row)
        found += [key for key in statistics if key not in found]
    grid = collection.manifest is not None
    head = ["id", *(["task", "repetition"] if grid else []), "status", *(SEARCH_COLUMNS if search else ()),
            *params, "seed", "model", "problem"]
    tail = ["best_episode", "episodes", "wall_time_s", "termination_cause",
            *(["attempts", "test_status", "last_error"] if grid else []), "folder"]
    ordered = []
    # Validation, the standard test, then the other test settings in the order they were first found.
    for prefix in (VALIDATION_PREFIX, *sorted(dict.fromkeys(prefixes.values()), key=lambda p: p != TEST_PREFIX)):
        group = [key for key in found if key.startswith(prefix) and key not in ordered]
        ordered += sorted(group, key=lambda k, p=prefix: (k != f"{p}loss", group.index(k)))
    return Table(rows, head + ordered + tail, params, ordered, search)


# ----------------------------------------------------------------------------------------------- load


@overload
def load(path: str | Path, curves: Literal[False] = False) -> pd.DataFrame: ...
@overload
def load(path: str | Path, curves: Literal[True]) -> tuple[pd.DataFrame, pd.DataFrame]: ...


def load(path: str | Path, curves: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """A grid (a folder with ``manifest.json``) or any folder of experiments as a pandas DataFrame.

    One row per experiment, the columns of ``grid_analysis.csv`` (see this module's docstring): the
    parameters that differ, status, seed, the best validation and the newest test statistics of each
    test setting, episodes, wall time, folder. With ``curves=True``, also the learning curves in long
    form: one row per logged training episode and per validation, with the experiment's ``id``, the
    ``split`` (``training`` / ``validation``) and the CSV's columns; join them on ``id``.
    Reading never fails on a missing or partial file; a path that is no folder is a BadInputError.
    """
    import pandas as pd

    collection = collect(Path(path))
    table = experiment_table(collection).frame()
    if not curves:
        return table
    parts = [read_curves(e.folder).assign(id=e.id) for e in collection.experiments if e.folder is not None]
    parts = [part for part in parts if len(part)]
    learning = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "split", "episode"])
    return table, learning[["id", *[c for c in learning.columns if c != "id"]]]


# --------------------------------------------------------------------------------------------- summary


def setting_columns(params: list[str], search: bool = False) -> list[str]:
    """The columns that identify a setting (everything but the repetition and its seed).

    With a search, the phase too: the re-evaluations of the best trial are repetitions of one another,
    not of the trial they re-train (chosen for its validation value, it would bias their mean).
    """
    return ["task", *(["phase"] if search else []), "model", "problem", *params]


def setting_ids(table: Table, experiments: list[CollectedExperiment]) -> list[int]:
    """Each row's setting (0, 1, ... in the manifest's order): the rows that are repetitions of one another.

    A row whose config lacks some parameters (an experiment that has not run yet has only the grid's
    sparse config) joins the first setting it agrees with on the parameters it has.
    """
    columns = setting_columns(table.params, table.search)
    missing = [{OWN_COLUMNS.get(k, k) for k in (*table.params, "model.name", "training.problem.name")
                if k not in e.flat} for e in experiments]
    keys = [{c: canonical(row.get(c)) for c in columns if c not in absent}
            for row, absent in zip(table.rows, missing)]
    groups: list[list[int]] = []
    complete = [i for i in range(len(keys)) if not missing[i]]
    for i in complete + [i for i in range(len(keys)) if missing[i]]:
        for group in groups:
            if all(keys[group[0]].get(c, v) == v for c, v in keys[i].items()):
                group.append(i)
                break
        else:
            groups.append([i])
    ids = [0] * len(keys)
    for number, group in enumerate(sorted(groups, key=min)):
        for i in group:
            ids[i] = number
    return ids


@dataclass
class Summary:
    """The summary over repetitions: every column computed, and those worth showing."""

    frame: pd.DataFrame  # one row per setting: setting columns, n, failed, experiments, <stat>_mean, <stat>_std
    columns: list[str]  # without the columns that say nothing (constant, or repeating another one)
    statistics: list[str]  # the statistics shown (their _mean and _std are in columns)

    def records(self, all_columns: bool = False) -> list[dict[str, Any]]:
        """The rows as dicts of Python values, None when empty."""
        return records(self.frame if all_columns else self.frame[self.columns])


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts of Python values, None where a cell is empty (NaN, NA)."""
    import pandas as pd

    return [{k: None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
             for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


def summarize(table: Table, experiments: list[CollectedExperiment]) -> Summary:
    """Mean and sample std of each statistic over each setting's finished repetitions, with n and failures."""
    import numpy as np
    import pandas as pd

    frame = table.frame()
    setting = setting_columns(table.params, table.search)
    # Statistics that some experiment measured (a number): only those get a mean and std.
    values = frame[table.statistics].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    measured = [c for c in table.statistics if values[c].notna().any()]
    stat_columns = [f"{c}_{kind}" for c in measured for kind in ("mean", "std")]
    columns = [*setting, "n", "failed", "experiments", *stat_columns]
    if frame.empty:
        return Summary(pd.DataFrame(columns=columns), columns, measured)

    key = pd.Series(setting_ids(table, experiments), index=frame.index, name="setting")
    grouped = frame.groupby(key, sort=True)
    summary = grouped[setting].first()  # the first value present: a sparse row leaves no hole
    summary["n"] = (frame["status"] == DONE).groupby(key).sum().astype(int)
    summary["failed"] = (frame["status"] == FAILED).groupby(key).sum().astype(int)
    summary["experiments"] = grouped.size()
    done = frame["status"] == DONE
    finished = values.loc[done, measured]
    for column in measured:
        repetitions = finished[column].groupby(key[done])
        summary[f"{column}_mean"] = repetitions.mean().astype(float)
        # one repetition: no spread (pandas' sample std would be NaN)
        summary[f"{column}_std"] = repetitions.std().where(repetitions.count() != 1, 0.0).astype(float)
    summary = summary.reset_index(drop=True)[columns]

    shown = _telling_settings(records(summary[setting]), setting)
    constant = [c for c in measured if finished[c].count() >= 2 and finished[c].nunique() == 1 and not is_result(c)]
    statistics = [c for c in measured if c not in constant]
    return Summary(summary, [*shown, "n", "failed", "experiments",
                             *[f"{c}_{kind}" for c in statistics for kind in ("mean", "std")]], statistics)


def _telling_settings(rows: list[dict[str, Any]], setting: list[str]) -> list[str]:
    """The setting columns that tell settings apart: not constant, not a repeat of another (keeps at least one)."""
    kept: dict[str, list[str]] = {}
    for column in setting:
        values = [canonical(row.get(column)) for row in rows]
        if len(set(values)) > 1 and values not in kept.values():
            kept[column] = values
    return list(kept) or setting[:1]


def labels(settings: list[dict[str, Any]], params: list[str]) -> list[str]:
    """Each setting's name: its task, then the parameters that tell it apart from the task's other settings.

    The task already names its model and problem, so a task with one setting is named by the task alone.
    """
    columns = ["model", "problem", *(["phase"] if any("phase" in row for row in settings) else []), *params]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in settings:
        by_task.setdefault(str(row.get("task")), []).append(row)
    varying = {task: [c for c in columns if len({canonical(r.get(c)) for r in rows}) > 1]
               for task, rows in by_task.items()}
    short = short_names(sorted({c for found in varying.values() for c in found}))
    names = []
    for row in settings:
        parts = [f"{short.get(c, c)}={'?' if row.get(c) is None else format_value(row.get(c))}"
                 for c in varying[str(row.get("task"))]]
        names.append(str(row.get("task")) + (" / " + ", ".join(parts) if parts else ""))
    return names


def csv_text(frame: pd.DataFrame, columns: list[str]) -> str:
    """A table as CSV text: empty cells for missing values, numbers as Python writes them."""
    return frame[columns].to_csv(index=False, lineterminator="\n", na_rep="")


__all__ = ["Summary", "Table", "experiment_table", "labels", "load", "records", "summarize"]

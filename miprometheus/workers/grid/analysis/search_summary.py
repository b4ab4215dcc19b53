"""The search summary (``search_summary.csv``): per task, what the search found and what it is worth.

A search's best trial was chosen for its validation value, so that value flatters it. What the summary
reports as the result is the best trial's configuration re-trained on fresh seeds and tested: mean,
sample std and a 95 % confidence interval from Student's t with n - 1 degrees of freedom, for the
objective statistic on the standard test and on every other test setting. Tasks on the same problem
had the same budget (trials per task); the best of them (by that re-evaluated test mean, in the
objective's direction) is compared with each other one by Welch's t-test (unequal variances).

Everything comes from the collected grid (manifest and experiment folders), not from the Optuna
journal: the journal only draws the figures (``search_plots``), and the table survives its loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.layout import GRID_CONFIG
from miprometheus.workers.grid.analysis.collect import Collection, is_number, read_yaml
from miprometheus.workers.grid.analysis.tables import (
    TEST_PREFIX,
    Table,
    experiment_table,
    format_value,
    short_names,
    statistic_name,
    typed_frame,
)
from miprometheus.workers.grid.manifest import DONE, FAILED, PRUNED, REEVALUATION, RUNNING, SEARCH, ExperimentRecord

if TYPE_CHECKING:
    import pandas as pd

MINIMIZE, MAXIMIZE = "minimize", "maximize"
CONFIDENCE = 0.95  # of the intervals
SIGNIFICANCE = 0.05  # a p-value below it is a significant difference
#: up to this many seeds on a side, a p-value comes with the warning that few seeds give wide intervals
FEW_SEEDS = 5
#: the trial states counted, each as a ``trials_<state>`` column (``trials_running`` only while some run)
TRIAL_STATES = (DONE, PRUNED, FAILED)
#: the columns of each test setting's re-evaluation, after its prefix and statistic (``test_loss_mean``)
INTERVAL_COLUMNS = ("n", "mean", "std", "ci_low", "ci_high")


@dataclass(frozen=True)
class Objective:
    """What a search optimises: a validation statistic and whether lower or higher is better."""

    statistic: str = "loss"
    direction: str = MINIMIZE

    def best(self, values: Sequence[float]) -> float:
        """The best of some values in this direction."""
        return min(values) if self.direction == MINIMIZE else max(values)


@dataclass(frozen=True)
class SearchSettings:
    """The part of ``grid_settings.search`` the summary needs (defaults when the grid file is gone)."""

    objective: Objective = field(default_factory=Objective)
    trials: int | None = None  # the budget: trials per task
    seeds: int | None = None  # re-evaluation seeds of the best trial


def search_settings(grid_dir: Path) -> SearchSettings:
    """The search settings of a grid folder's ``grid_configuration.yaml`` (what the grid ran with)."""
    config = read_yaml(Path(grid_dir) / GRID_CONFIG)
    settings = config.get("grid_settings") if isinstance(config, dict) else None
    search = settings.get("search") if isinstance(settings, dict) else None
    if not isinstance(search, dict):
        return SearchSettings()
    objective = search.get("objective") if isinstance(search.get("objective"), dict) else {}
    direction = MAXIMIZE if str(objective.get("direction", MINIMIZE)).lower() == MAXIMIZE else MINIMIZE
    reevaluate = search.get("reevaluate") if isinstance(search.get("reevaluate"), dict) else {}
    return SearchSettings(Objective(str(objective.get("statistic", "loss")), direction),
                          _whole(search.get("trials")), _whole(reevaluate.get("seeds")))


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and confidence interval of a few values (None where too few values say nothing)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student's t interval of the mean, n - 1 degrees of freedom: with 3 seeds, t is 4.3 and not 1.96."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return Interval(0, None, None, None, None)
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(1, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def welch_p(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Welch's t-test p-value (two-sided); None with fewer than 2 values a side or no spread at all."""
    from scipy import stats

    if len(first) < 2 or len(second) < 2 or (len(set(first)) == 1 and len(set(second)) == 1):
        return None  # no spread on either side: the statistic is 0/0
    p = float(stats.ttest_ind(first, second, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


# ------------------------------------------------------------------------------------------------ tasks


@dataclass
class _Task:
    """One task's experiments of the search: its manifest records beside their table rows."""

    name: str
    search: list[tuple[ExperimentRecord, dict[str, Any]]] = field(default_factory=list)
    reevaluations: list[tuple[ExperimentRecord, dict[str, Any]]] = field(default_factory=list)

    @property
    def experiments(self) -> list[tuple[ExperimentRecord, dict[str, Any]]]:
        return [*self.search, *self.reevaluations]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for _, row in self.experiments]


def _tasks(collection: Collection, table: Table) -> list[_Task]:
    """The tasks that searched, in the manifest's order."""
    tasks: dict[str, _Task] = {}
    for experiment, row in zip(collection.experiments, table.rows):
        record = experiment.record
        if record is None or record.phase not in (SEARCH, REEVALUATION):
            continue
        task = tasks.setdefault(record.task, _Task(record.task))
        (task.search if record.phase == SEARCH else task.reevaluations).append((record, row))
    return list(tasks.values())


def best_trial(task: _Task, objective: Objective) -> int | None:
    """The trial the task's result stands for: the one re-evaluated, else the best finished one so far.

    Where several trials were re-evaluated (``reevaluate.top`` > 1), the best by its search value: picking
    by the re-evaluated test values would choose on the test set.
    """
    retrained = list(dict.fromkeys(record.trial for record, _ in task.reevaluations))
    candidates = [record for record, _ in task.search
                  if (record.trial in retrained if retrained else record.search_state == DONE)]
    scored = [record for record in candidates if is_number(record.objective)]
    if scored:
        value = objective.best([record.objective for record in scored])
        return next(record.trial for record in scored if record.objective == value)
    return retrained[0] if retrained else None


def _counts(task: _Task, states: Sequence[str]) -> dict[str, int]:
    return {f"trials_{state}": sum(record.search_state == state for record, _ in task.search) for state in states}


def _job_time(record: ExperimentRecord, row: dict[str, Any]) -> float | None:
    """A training job's wall time as the grid paid it (start-up included), else as the run recorded it."""
    if is_number(record.started) and is_number(record.ended):
        return record.ended - record.started
    return row.get("wall_time_s") if is_number(row.get("wall_time_s")) else None


def _compute(task: _Task) -> dict[str, Any]:
    """What every experiment of the task cost, the search and the re-evaluations: training wall time, episodes."""
    wall = [time for time in (_job_time(record, row) for record, row in task.experiments) if time is not None]
    episodes = [row["episodes"] for row in task.rows if is_number(row.get("episodes"))]
    return {"experiments": len(task.rows), "compute_wall_time_s": round(math.fsum(wall), 3) if wall else None,
            "compute_episodes": sum(episodes) if episodes else None}


def params_text(params: dict[str, Any]) -> str:
    """Parameters as one short line: ``lr=0.001, hidden_size=64`` (the shortest suffix that tells keys apart)."""
    short = short_names(list(params))
    return ", ".join(f"{short[key]}={format_value(value)}" for key, value in params.items())


def _reevaluated(task: _Task, trial: int | None, column: str) -> list[float]:
    """A trial's re-evaluated values of a test column: one per finished seed that has it."""
    return [float(row[column]) for record, row in task.reevaluations
            if trial is not None and record.trial == trial and record.status == DONE and is_number(row.get(column))]


def _trial_records(task: _Task, trial: int | None) -> tuple[ExperimentRecord | None, ExperimentRecord | None]:
    """A trial's search record and one of its re-evaluations' (either may be missing)."""
    searched = next((record for record, _ in task.search if trial is not None and record.trial == trial), None)
    retrained = next((record for record, _ in task.reevaluations if trial is not None and record.trial == trial), None)
    return searched, retrained


def _task_row(task: _Task, settings: SearchSettings, tests: list[str], states: Sequence[str]) -> dict[str, Any]:
    """One task's row, without the comparison with the other tasks."""
    objective = settings.objective
    best = best_trial(task, objective)
    searched, retrained = _trial_records(task, best)
    source = searched or retrained
    params = dict(source.params) if source is not None else {}
    seeds = sum(record.trial == best and record.status == DONE for record, _ in task.reevaluations)
    first = next((row for row in task.rows if row.get("model") is not None), task.rows[0])
    row: dict[str, Any] = {"task": task.name, "model": first.get("model"), "problem": first.get("problem"),
                           "objective": objective.statistic, "direction": objective.direction,
                           "trials_budget": settings.trials, **_counts(task, states), "best_trial": best,
                           "search_value": searched.objective if searched is not None else None,
                           "best_params": params_text(params), **params, **_compute(task),
                           "seeds": seeds if best is not None else 0}
    for column in tests:
        found = interval(_reevaluated(task, best, column))
        row.update(zip((f"{column}_{kind}" for kind in INTERVAL_COLUMNS),
                       (found.n, found.mean, found.std, found.low, found.high)))
    return row


# ------------------------------------------------------------------------------------------- comparison


def _comparison(rows: list[dict[str, Any]], samples: list[list[float]], objective: Objective,
                column: str) -> list[dict[str, Any]]:
    """Per row: the best task on its problem, and Welch's p-value against it with what it means."""
    by_problem: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_problem.setdefault(str(row.get("problem")), []).append(index)
    cells: list[dict[str, Any]] = [{} for _ in rows]
    for problem, members in by_problem.items():
        ranked = [i for i in members if is_number(rows[i].get(f"{column}_mean"))]
        for i in members:
            cells[i] = {"best_on_problem": None, "p_value": None, "significant": None,
                        "comparison": "no re-evaluated test yet"}
        if not ranked:
            continue
        leader = next(i for i in ranked if rows[i][f"{column}_mean"] == objective.best(
            [rows[j][f"{column}_mean"] for j in ranked]))
        for i in members:
            cells[i]["best_on_problem"] = rows[leader]["task"]
        cells[leader]["comparison"] = (f"best on {problem}" if len(members) > 1 else f"the only task on {problem}")
        for i in ranked:
            if i != leader:
                cells[i].update(_versus(rows[leader]["task"], samples[i], samples[leader]))
    return cells


def _versus(leader: str, own: list[float], best: list[float]) -> dict[str, Any]:
    """One task against the best: Welch's p, whether it is significant, and a sentence that says so."""
    sizes = f"{len(own)} vs {len(best)}"
    if min(len(own), len(best)) < 2:
        return {"comparison": f"no p-value against {leader}: fewer than 2 seeds on a side ({sizes})"}
    p = welch_p(own, best)
    if p is None:
        return {"comparison": f"no p-value against {leader}: no spread within either task's seeds ({sizes})"}
    verdict = "significant" if p < SIGNIFICANCE else "not significant"
    text = f"vs {leader}: Welch p = {p:.3g}, {verdict} at {SIGNIFICANCE}"
    if min(len(own), len(best)) <= FEW_SEEDS:
        text += f"; few seeds ({sizes}) give wide intervals"
    return {"p_value": p, "significant": p < SIGNIFICANCE, "comparison": text}


# ---------------------------------------------------------------------------------------------- summary


@dataclass
class SearchSummary:
    """One row per task that searched, the columns of ``search_summary.csv``, and what they were computed from."""

    rows: list[dict[str, Any]]
    columns: list[str]
    settings: SearchSettings
    tests: list[str]  # the test columns of the objective statistic: the standard test's first (test_loss, ...)
    params: list[str]  # the best parameters' columns (dotted keys), over all tasks
    compared: str  # the test column the tasks are compared on: the standard test's, else the first setting's

    @property
    def tasks(self) -> list[str]:
        return [str(row["task"]) for row in self.rows]

    @property
    def few_seeds(self) -> bool:
        """Whether some p-value rests on few seeds (up to FEW_SEEDS on a side): the report says so beside it."""
        return any(is_number(row.get("p_value")) and "few seeds" in str(row.get("comparison")) for row in self.rows)

    def frame(self) -> pd.DataFrame:
        """The summary as a DataFrame, typed like ``load``'s table."""
        return typed_frame(self.rows, self.columns)


def objective_tests(table: Table, statistic: str) -> list[str]:
    """The test columns of a statistic: the standard test's, then each setting's (``test_<statistic>`` until tested).

    A testing section with named settings has no standard test: its settings' columns are all there is.
    """
    found = [c for c in table.statistics if c.startswith("test") and statistic_name(c) == statistic]
    return found or [f"{TEST_PREFIX}{statistic}"]


def search_summary(collection: Collection, table: Table | None = None,
                   settings: SearchSettings | None = None) -> SearchSummary:
    """The search summary of a collected grid (``table``: its experiment table, when already built)."""
    table = table if table is not None else experiment_table(collection)
    settings = settings if settings is not None else search_settings(collection.root)
    tests = objective_tests(table, settings.objective.statistic)
    tasks = _tasks(collection, table)
    running = any(record.search_state == RUNNING for task in tasks for record, _ in task.search)
    states = (*TRIAL_STATES, *([RUNNING] if running else []))
    rows = [_task_row(task, settings, tests, states) for task in tasks]
    # The tasks compare on the standard test; without one (named settings only), on the first setting tested.
    compared = next((c for c in tests if any(is_number(row.get(f"{c}_mean")) for row in rows)), tests[0])
    samples = [_reevaluated(task, best_trial(task, settings.objective), compared) for task in tasks]
    for row, cells in zip(rows, _comparison(rows, samples, settings.objective, compared)):
        row.update(cells, compared_on=compared)
    params = list(dict.fromkeys(key for task in tasks for record, _ in (*task.search, *task.reevaluations)
                                for key in record.params))
    columns = ["task", "model", "problem", "objective", "direction", "trials_budget",
               *(f"trials_{state}" for state in states), "best_trial", "search_value", "best_params", *params,
               "experiments", "compute_wall_time_s", "compute_episodes", "seeds",
               *(f"{c}_{kind}" for c in tests for kind in INTERVAL_COLUMNS),
               "compared_on", "best_on_problem", "p_value", "significant", "comparison"]
    return SearchSummary(rows, columns, settings, tests, params, compared)


__all__ = ["Interval", "Objective", "SearchSettings", "SearchSummary", "best_trial", "interval", "search_settings",
           "search_summary", "welch_p"]

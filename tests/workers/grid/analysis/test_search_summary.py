"""The analysis of a grid with a search: load's search columns, search_summary.csv, the report's Search section.

The grid is synthetic, written as the search runner leaves it: two tasks on one problem, trials done, pruned,
failed and running, the best trial of each re-evaluated on fresh seeds (tested as configured and with a named
test setting), and an Optuna journal with one study per task. The expected numbers are computed here, from
the values written, with numpy and scipy's own interval and test functions.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from scipy import stats

import miprometheus
from miprometheus.workers.grid.analysis import analyze
from miprometheus.workers.grid.analysis.collect import collect
from miprometheus.workers.grid.analysis.search_plots import importances, write_search_plots
from miprometheus.workers.grid.analysis.search_summary import interval, search_summary, welch_p
from miprometheus.workers.grid.manifest import DONE, FAILED, PRUNED, REEVALUATION, RUNNING, SEARCH, Manifest
from tests.workers.grid.analysis.test_analyzer import (
    aggregated,
    assert_png,
    effective_config,
    new_grid,
    record,
    sparse,
    write_csv,
    write_experiment,
)

LR, HIDDEN, BATCH = "training.optimizer.lr", "model.hidden_size", "training.problem.batch_size"
DISTRIBUTIONS = {LR: optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                 HIDDEN: optuna.distributions.IntDistribution(8, 64),
                 BATCH: optuna.distributions.CategoricalDistribution([16, 32])}
SEARCH_SETTINGS = {"space": {LR: {"low": 1e-4, "high": 1e-1, "log": True}, HIDDEN: {"low": 8, "high": 64},
                             BATCH: {"choices": [16, 32]}},
                   "trials": 4, "sampler": "tpe", "objective": {"statistic": "loss", "direction": "minimize"},
                   "pruner": "median", "reevaluate": {"top": 1, "seeds": 5}}


@dataclass
class Trial:
    """A search trial as the manifest and the study hold it; a folder when it trained (wall_s: its wall time)."""

    number: int
    lr: float
    hidden: int
    state: str
    objective: float | None
    wall_s: int | None  # None: no experiment folder (failed before its first checkpoint, or not started)

    @property
    def params(self) -> dict[str, Any]:
        return {LR: self.lr, HIDDEN: self.hidden, BATCH: 16}  # every trial drew batch size 16: no difference


TASKS = {  # task -> (model, trials); both tasks search SerialRecall
    "lstm_search": ("LSTM", [Trial(0, 0.01, 16, DONE, 0.50, 4), Trial(1, 0.001, 32, DONE, 0.30, 5),
                             Trial(2, 0.05, 8, PRUNED, 0.90, 2), Trial(3, 0.0002, 64, FAILED, None, None)]),
    "gru_search": ("GRU", [Trial(0, 0.003, 24, DONE, 0.40, 6), Trial(1, 0.02, 48, DONE, 0.20, 7),
                           Trial(2, 0.07, 12, PRUNED, 0.80, 3), Trial(3, 0.0005, 40, RUNNING, None, None)]),
}
BEST = {"lstm_search": 1, "gru_search": 1}
# The re-evaluated test losses of the best trials: standard test and the named setting length_20.
TEST_LOSS = {"lstm_search": [0.31, 0.35, 0.29, 0.33, 0.36], "gru_search": [0.21, 0.24, 0.20]}
LENGTH_LOSS = {"lstm_search": [0.61, 0.70, 0.58, 0.66, 0.72], "gru_search": [0.50, 0.55, 0.45]}
REEVALUATION_WALL_S = 8
FAILED_TRIAL_TIMES = (100.0, 103.5)  # started, ended: a failed trial's wall time from the manifest alone
JOB_TIMES = {("lstm_search", 0): (10.0, 19.5)}  # a job's time in the manifest counts, not its run's (4 s)


def _config(model: str, trial: Trial, seed: int) -> dict[str, Any]:
    config = effective_config(model, "SerialRecall", trial.lr, seed)
    config["model"]["hidden_size"] = trial.hidden
    return config


def _sparse(model: str, trial: Trial, seed: int) -> dict[str, Any]:
    config = sparse(model, "SerialRecall", trial.lr, seed)
    config["model"]["hidden_size"] = trial.hidden
    return config


def _reevaluation(grid: Path, exp_id: str, config: dict[str, Any], test_loss: float, length_loss: float,
                  standard: bool) -> str:
    """A re-evaluation experiment, tested once: the named setting ``length_20``, with or without the standard test."""
    relative = write_experiment(grid, exp_id, config, 0.25, 0.8, None, wall_s=REEVALUATION_WALL_S)
    test = grid / relative / "test_20261128_060000"
    if standard:
        write_csv(test / "testing_set_agg_statistics.csv", [aggregated(test_loss, 0.7)])
        (test / "testing_configuration.yaml").write_text(yaml.safe_dump(config))
    named = test / "length_20"
    write_csv(named / "testing_set_agg_statistics.csv", [aggregated(length_loss, 0.5)])
    (named / "testing_configuration.yaml").write_text(yaml.safe_dump({**config, "testing": {
        **config["testing"], "setting": "length_20"}}))
    return relative


def write_search_grid(root: Path, gru_seeds: int = 3, standard_test: bool = True) -> Path:
    """The grid folder a search leaves: manifest, configs, experiment folders, grid file and journal."""
    grid = new_grid(root)
    (grid / "grid_configuration.yaml").write_text(yaml.safe_dump(
        {"description": "a synthetic search", "grid_tasks": [], "grid_settings": {"search": SEARCH_SETTINGS}}))
    records, seed = [], 1000
    for task, (model, trials) in TASKS.items():
        for trial in trials:
            seed += 1
            exp_id = f"{len(records):03d}_{task}_t{trial.number}"
            folder = (write_experiment(grid, exp_id, _config(model, trial, seed), trial.objective or 1.0, 0.7, None,
                                       wall_s=trial.wall_s) if trial.wall_s is not None else None)
            status = {DONE: DONE, PRUNED: DONE, FAILED: FAILED, RUNNING: RUNNING}[trial.state]
            job = FAILED_TRIAL_TIMES if trial.state == FAILED else JOB_TIMES.get((task, trial.number))
            times = dict(zip(("started", "ended"), job)) if job else {}
            records.append(record(grid, exp_id, task, 0, seed, _sparse(model, trial, seed), status=status,
                                  folder=folder, phase=SEARCH, trial=trial.number, params=trial.params,
                                  search_state=trial.state, objective=trial.objective, **times))
        best = trials[BEST[task]]
        losses = list(zip(TEST_LOSS[task], LENGTH_LOSS[task]))[: gru_seeds if task == "gru_search" else None]
        for repetition, (test_loss, length_loss) in enumerate(losses):
            seed += 1
            exp_id = f"{len(records):03d}_{task}_best_r{repetition}"
            folder = _reevaluation(grid, exp_id, _config(model, best, seed), test_loss, length_loss, standard_test)
            records.append(record(grid, exp_id, task, repetition, seed, _sparse(model, best, seed), status=DONE,
                                  folder=folder, test_status=DONE, phase=REEVALUATION, trial=best.number,
                                  params=best.params, objective=0.25))
        if task == "gru_search":  # a re-evaluation that failed: counted in the compute, not among the seeds
            seed += 1
            records.append(record(grid, f"{len(records):03d}_{task}_best_r9", task, 9, seed,
                                  _sparse(model, best, seed), status=FAILED, phase=REEVALUATION,
                                  trial=best.number, params=best.params, started=200.0, ended=201.25))
    Manifest(grid, records, {"grid_file": "grids/search.yaml"}).save()
    _write_journal(grid / "search.journal")
    return grid


def _write_journal(path: Path) -> None:
    """One study per task, told what the manifest says: the same parameters, values and states."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    for task, (_, trials) in TASKS.items():
        study = optuna.create_study(study_name=task, storage=storage, direction="minimize")
        for trial in trials:
            study.enqueue_trial(trial.params)
            asked = study.ask(DISTRIBUTIONS)
            assert asked.params == trial.params and asked.number == trial.number
            if trial.state == DONE:
                study.tell(asked, trial.objective)
            elif trial.state == PRUNED:
                asked.report(trial.objective, step=10)
                study.tell(asked, state=optuna.trial.TrialState.PRUNED)
            elif trial.state == FAILED:
                study.tell(asked, state=optuna.trial.TrialState.FAIL)


@pytest.fixture(scope="module")
def search_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The search grid, analysed once (the tests read what the analysis wrote)."""
    grid = write_search_grid(tmp_path_factory.mktemp("search"))
    journal = (grid / "search.journal").read_bytes()
    analyze(grid, console=False)
    assert (grid / "search.journal").read_bytes() == journal  # read, never written
    return grid


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["task"]: row for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------------ load


def test_load_has_the_search_columns(search_grid: Path) -> None:
    table = miprometheus.load(search_grid).set_index("id")
    columns = list(table.columns)
    assert columns[:8] == ["task", "repetition", "status", "phase", "trial", "state", "objective", LR]
    for key in (LR, HIDDEN, BATCH):  # each sampled parameter once, by its dotted key (batch size never differs)
        assert columns.count(key) == 1, key
    assert table.loc["002_lstm_search_t2", "phase"] == SEARCH and table.loc["002_lstm_search_t2", "state"] == PRUNED
    assert table.loc["003_lstm_search_t3", "state"] == FAILED and math.isnan(table.loc["003_lstm_search_t3",
                                                                                         "objective"])
    assert table.loc["001_lstm_search_t1", "objective"] == pytest.approx(0.30)
    assert table.loc["012_gru_search_t3", "state"] == RUNNING  # no folder yet: its sampled values from the manifest
    assert table.loc["012_gru_search_t3", HIDDEN] == 40 and table.loc["012_gru_search_t3", BATCH] == 16
    reevaluation = table.loc["004_lstm_search_best_r0"]
    assert reevaluation["phase"] == REEVALUATION and reevaluation["trial"] == 1 and reevaluation["state"] == DONE
    assert reevaluation[LR] == pytest.approx(0.001) and reevaluation["test_loss"] == pytest.approx(0.31)
    assert reevaluation["test[length_20]_loss"] == pytest.approx(0.61)
    assert table.loc["016_gru_search_best_r9", "state"] == FAILED
    assert str(table["trial"].dtype) == "Int64"


def test_an_ordinary_grid_has_no_search_columns(tmp_path: Path) -> None:
    grid = new_grid(tmp_path)
    folder = write_experiment(grid, "000_a_r0", effective_config("LSTM", "SerialRecall", 0.01, 1), 0.5, 0.8, 0.7)
    Manifest(grid, [record(grid, "000_a_r0", "a", 0, 1, sparse("LSTM", "SerialRecall", 0.01, 1), status=DONE,
                           folder=folder, test_status=DONE)], {}).save()
    columns = set(miprometheus.load(grid).columns)
    assert not columns & {"phase", "trial", "state", "objective"}
    result = analyze(grid, console=False)
    assert result.search_summary_csv is None and not (grid / "search_summary.csv").exists()
    assert "<h2>Search</h2>" not in result.report_html.read_text()


# --------------------------------------------------------------------------------------- search summary


def _expected(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, sample std and the 95 % Student's t interval, by numpy and scipy's own interval."""
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, std, float(low), float(high)


def test_search_summary_numbers(search_grid: Path) -> None:
    rows = read_rows(search_grid / "search_summary.csv")
    assert list(rows) == ["lstm_search", "gru_search"]
    lstm, gru = rows["lstm_search"], rows["gru_search"]
    for task, row in rows.items():
        assert row["model"] == TASKS[task][0] and row["problem"] == "SerialRecall"
        assert row["objective"] == "loss" and row["direction"] == "minimize" and row["trials_budget"] == "4"
        assert row["best_trial"] == "1" and row["best_on_problem"] == "gru_search"
        assert row["compared_on"] == "test_loss"
        for column, losses in (("test_loss", TEST_LOSS[task]), ("test[length_20]_loss", LENGTH_LOSS[task])):
            mean, std, low, high = _expected(losses)
            assert row[f"{column}_n"] == str(len(losses))
            assert float(row[f"{column}_mean"]) == pytest.approx(mean)
            assert float(row[f"{column}_std"]) == pytest.approx(std)
            assert float(row[f"{column}_ci_low"]) == pytest.approx(low)
            assert float(row[f"{column}_ci_high"]) == pytest.approx(high)
    assert (lstm["trials_done"], lstm["trials_pruned"], lstm["trials_failed"], lstm["trials_running"]) == (
        "2", "1", "1", "0")
    assert (gru["trials_done"], gru["trials_pruned"], gru["trials_failed"], gru["trials_running"]) == (
        "2", "1", "0", "1")
    assert float(lstm["search_value"]) == pytest.approx(0.30) and float(gru["search_value"]) == pytest.approx(0.20)
    assert float(lstm[LR]) == pytest.approx(0.001) and lstm[HIDDEN] == "32" and lstm[BATCH] == "16"
    assert lstm["best_params"] == "lr=0.001, hidden_size=32, batch_size=16"
    assert gru["seeds"] == "3" and lstm["seeds"] == "5"  # the failed re-evaluation is no seed

    # Compute over every experiment of the task: trials (a failed one by its manifest times) and re-evaluations.
    for task, failed_wall in (("lstm_search", FAILED_TRIAL_TIMES[1] - FAILED_TRIAL_TIMES[0]),
                              ("gru_search", 1.25)):
        trials = TASKS[task][1]
        trained = [(JOB_TIMES[(task, t.number)][1] - JOB_TIMES[(task, t.number)][0]
                    if (task, t.number) in JOB_TIMES else t.wall_s) for t in trials if t.wall_s is not None]
        wall = sum(trained) + failed_wall + REEVALUATION_WALL_S * len(TEST_LOSS[task])
        assert float(rows[task]["compute_wall_time_s"]) == pytest.approx(wall)
        assert rows[task]["compute_episodes"] == str(30 * (len(trained) + len(TEST_LOSS[task])))
    assert lstm["experiments"] == "9" and gru["experiments"] == "8"

    # GRU is the best on SerialRecall; LSTM against it by Welch's t-test.
    p = stats.ttest_ind(TEST_LOSS["lstm_search"], TEST_LOSS["gru_search"], equal_var=False).pvalue
    assert float(lstm["p_value"]) == pytest.approx(p) and p < 0.05 and lstm["significant"] == "True"
    assert "few seeds (5 vs 3) give wide intervals" in lstm["comparison"]
    assert gru["p_value"] == "" and gru["significant"] == "" and gru["comparison"] == "best on SerialRecall"


def test_too_few_seeds_give_no_p_value(tmp_path: Path) -> None:
    grid = write_search_grid(tmp_path, gru_seeds=1)
    summary = search_summary(collect(grid))
    lstm, gru = summary.rows
    assert gru["test_loss_n"] == 1 and gru["test_loss_mean"] == pytest.approx(0.21) and gru["test_loss_std"] is None
    assert gru["test_loss_ci_low"] is None and lstm["best_on_problem"] == "gru_search"
    assert lstm["p_value"] is None and lstm["significant"] is None
    assert "fewer than 2 seeds on a side (5 vs 1)" in lstm["comparison"]
    assert not summary.few_seeds


def test_without_a_standard_test_tasks_compare_on_the_first_setting(tmp_path: Path) -> None:
    """A testing section with named settings has no standard test: the first setting is the comparison."""
    summary = search_summary(collect(write_search_grid(tmp_path, standard_test=False)))
    assert summary.tests == ["test[length_20]_loss"] and summary.compared == "test[length_20]_loss"
    lstm, gru = summary.rows
    assert "test_loss_mean" not in summary.columns and lstm["compared_on"] == "test[length_20]_loss"
    assert gru["test[length_20]_loss_mean"] == pytest.approx(np.mean(LENGTH_LOSS["gru_search"]))
    assert lstm["best_on_problem"] == "gru_search" and lstm["p_value"] == pytest.approx(
        stats.ttest_ind(LENGTH_LOSS["lstm_search"], LENGTH_LOSS["gru_search"], equal_var=False).pvalue)


def test_interval_and_welch_edges() -> None:
    assert interval([]).mean is None and interval([0.5]).std is None and interval([0.5]).mean == 0.5
    assert interval([1.0, 1.0]).low == pytest.approx(1.0)
    assert welch_p([1.0], [1.0, 2.0]) is None and welch_p([1.0, 1.0], [1.0, 1.0]) is None


# ------------------------------------------------------------------------------------------------- report


def test_report_has_the_search_section_and_figures(search_grid: Path) -> None:
    report = (search_grid / "report.html").read_text()
    section = report.split("<h2>Search</h2>")[1].split("<h2>")[0]
    assert "budget: 4 trials per task" in section and "few seeds" in section.lower()
    assert f"optuna-dashboard {search_grid / 'search.journal'}" in section
    assert "lr=0.001, hidden_size=32, batch_size=16" in section and "Welch p = " in section
    for task in TASKS:
        for kind in ("history", "importances", "parallel"):
            name = f"plots/search_{task}_{kind}.png"
            assert f"<img src='{name}'" in section, name
            assert_png(search_grid / name)


def test_console_prints_the_search_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_search_grid(tmp_path)
    (grid / "search.journal").write_text("{not json\n{\"op_code\": 0}\n")  # corrupt
    result = analyze(grid, console=True)
    out = capsys.readouterr().out
    assert "Search of grid_20261128_053400" in out and "gru_search" in out and "few seeds" in out
    assert "optuna-dashboard" in out
    # A corrupt journal: the summary is the same (it comes from the manifest), the figures are missing.
    assert [row["task"] for row in result.search] == ["lstm_search", "gru_search"]
    assert result.search[0]["p_value"] == pytest.approx(
        stats.ttest_ind(TEST_LOSS["lstm_search"], TEST_LOSS["gru_search"], equal_var=False).pvalue)
    assert result.search_plots == [] and not list((grid / "plots").glob("search_*"))
    assert "search.journal could not be read" in result.report_html.read_text()


def test_a_missing_journal_is_not_created(tmp_path: Path) -> None:
    """Optuna's file backend creates a missing journal: the analysis must not open one that is not there."""
    grid = tmp_path / "grid"
    grid.mkdir()
    plots = write_search_plots(grid, ["lstm_search"], "loss")
    assert not (grid / "search.journal").exists() and not (grid / "plots").exists()
    assert plots.error == "there is no search.journal in the grid folder" and plots.plots == {"lstm_search": []}


def test_importances_say_why_they_are_missing() -> None:
    study = optuna.create_study()
    distribution = {"x": optuna.distributions.FloatDistribution(0, 1)}
    assert "need at least 2" in importances(study)
    for value in (0.1, 0.5, 0.9):
        study.enqueue_trial({"x": value})
        study.tell(study.ask(distribution), value)
    assert "a single parameter (x)" in importances(study)


def test_the_grid_summary_keeps_reevaluations_apart_from_their_trial(search_grid: Path) -> None:
    """The best trial and its re-evaluations share their parameters; the re-evaluations alone are repetitions."""
    with (search_grid / "grid_summary.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["task"] == "lstm_search"]
    reevaluated = [r for r in rows if r["phase"] == REEVALUATION]
    assert len(reevaluated) == 1 and reevaluated[0]["n"] == "5" and reevaluated[0]["experiments"] == "5"
    assert float(reevaluated[0]["test_loss_mean"]) == pytest.approx(np.mean(TEST_LOSS["lstm_search"]))
    assert len([r for r in rows if r["phase"] == SEARCH]) == 4

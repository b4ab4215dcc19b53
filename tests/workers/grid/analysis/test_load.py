"""``miprometheus.load``: a grid or a folder of experiments as a pandas DataFrame, for notebooks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import miprometheus
from miprometheus.errors import BadInputError
from miprometheus.statistics import read_csv
from miprometheus.workers.grid.analysis import analyze
from miprometheus.workers.grid.folders import experiment_folders, finished_tests, newest_test
from tests.conftest import TINY_SERIAL
from tests.workers.grid.analysis.test_analyzer import effective_config, synthetic_grid, write_csv, write_experiment  # noqa: F401


def test_load_of_a_grid_is_its_analysis_table(synthetic_grid: Path) -> None:  # noqa: F811
    table = miprometheus.load(synthetic_grid)
    analysis = analyze(synthetic_grid, console=False)
    assert list(table.columns) == list(read_csv(analysis.analysis_csv)[0])
    assert list(table["id"]) == [row["id"] for row in analysis.rows] and len(table) == 14
    # Typed columns: whole numbers stay integers beside empty cells, statistics are floats, NaN when absent.
    assert str(table["episodes"].dtype) == "Int64" and table["val_loss"].dtype == "float64"
    by_id = table.set_index("id")
    assert by_id.loc["000_lstm_serialrecall_r0", "val_acc"] == pytest.approx(0.85)
    assert by_id.loc["000_lstm_serialrecall_r0", "test_acc"] == pytest.approx(0.75)  # the newest test
    assert math.isnan(by_id.loc["012_lstm_serialrecall_r3", "val_loss"])
    assert by_id.loc["012_lstm_serialrecall_r3", "status"] == "failed"
    # What a notebook does with it: mean over the finished repetitions of each task.
    means = table[table["status"] == "done"].groupby("task")["val_loss"].mean()
    assert means["lstm_serialrecall"] == pytest.approx(0.6) and means["gru_reverserecall"] == pytest.approx(0.3)


def _plain_folder(root: Path) -> None:
    """Two experiments of different problems, one with a grouped statistic the other lacks; noise around them."""
    write_experiment(root, "a", effective_config("LSTM", "SerialRecall", 0.01, 1), 0.5, 0.8, 0.7)
    relative = write_experiment(root, "bb", effective_config("GRU", "ReverseRecall", 0.001, 2), 0.3, 0.9, 0.85)
    folder = root / relative
    info = json.loads((folder / "run_info.json").read_text())
    info["best_validation_statistics"]["acc_relational"] = 0.66
    (folder / "run_info.json").write_text(json.dumps(info))
    test = folder / "test_20261128_053500" / "testing_set_agg_statistics.csv"
    rows = read_csv(test)
    write_csv(test, [{**rows[0], "acc_relational": 0.61, "acc_relational_std": 0.01}])
    # An attempt a grid set aside is no experiment; a test folder is part of its experiment.
    aside = root / "experiments" / "bb" / "_abandoned" / "x"
    aside.mkdir(parents=True)
    (aside / "training_configuration.yaml").write_text("{}\n")
    (folder / "test_20261128_053500" / "run_info.json").write_text("{}")


def test_load_of_a_plain_experiments_folder(tmp_path: Path) -> None:
    _plain_folder(tmp_path)
    table = miprometheus.load(tmp_path)
    assert len(table) == 2
    assert list(table["id"]) == [p.relative_to(tmp_path).as_posix() for p in experiment_folders(tmp_path)]
    assert list(table["folder"]) == list(table["id"])
    for absent in ("task", "repetition", "attempts", "test_status", "last_error"):  # only a grid knows these
        assert absent not in table.columns, absent
    assert list(table["status"]) == ["completed", "completed"] and list(table["seed"]) == [1, 2]
    assert list(table["model"]) == ["LSTM", "GRU"] and list(table["problem"]) == ["SerialRecall", "ReverseRecall"]
    assert list(table["training.optimizer.lr"]) == [0.01, 0.001]
    # A statistic only one experiment has is NaN for the other, never an error.
    assert math.isnan(table.loc[0, "val_acc_relational"]) and table.loc[1, "val_acc_relational"] == 0.66
    assert math.isnan(table.loc[0, "test_acc_relational"]) and table.loc[1, "test_acc_relational"] == 0.61
    assert "test_acc_relational_std" not in table.columns
    assert list(table["test_acc"]) == [pytest.approx(0.7), pytest.approx(0.85)]


def test_load_with_learning_curves(tmp_path: Path) -> None:
    _plain_folder(tmp_path)
    table, curves = miprometheus.load(tmp_path, curves=True)
    assert list(curves.columns[:3]) == ["id", "split", "episode"]
    counts = curves.groupby(["id", "split"]).size()
    for experiment in table["id"]:
        assert counts[(experiment, "training")] == 30 and counts[(experiment, "validation")] == 3
    validation = curves[curves["split"] == "validation"].merge(table[["id", "model"]], on="id")
    last = validation[validation["episode"] == 30].set_index("model")["loss"]
    assert last["LSTM"] == pytest.approx(0.5) and last["GRU"] == pytest.approx(0.3)  # the best, last validation
    assert curves[curves["split"] == "training"]["loss_std"].isna().all()  # validation-only columns


def test_each_test_setting_gets_its_columns(tmp_path: Path) -> None:
    """A real training tested as configured and with longer sequences: one set of test columns per setting."""
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_SERIAL)
    options = RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["t"])
    result = runs.train([str(config)], ["training.terminal_conditions.episode_limit=20"], options, test_after=True)
    longer = ["testing.problem.min_sequence_length=6", "testing.problem.max_sequence_length=6"]
    longer_folder, longer_stats = runs.test(result.folder, longer, options)
    standard_folder, standard_stats = runs.test(result.folder, [], options)  # the newest standard test counts
    assert finished_tests(result.folder)[-1] == newest_test(result.folder) == standard_folder

    table = miprometheus.load(tmp_path / "experiments")
    assert len(table) == 1
    row = table.iloc[0]
    setting = "test[max_sequence_length=6,min_sequence_length=6]_"
    assert row["test_acc"] == pytest.approx(standard_stats["acc"])
    assert row[f"{setting}acc"] == pytest.approx(longer_stats["acc"])
    assert row[f"{setting}seq_length"] == pytest.approx(6.0) and row["test_seq_length"] == pytest.approx(4.0)
    columns = list(table.columns)
    assert columns.index("val_loss") < columns.index("test_loss") < columns.index(f"{setting}loss")
    assert yaml.safe_load((longer_folder / "testing_configuration.yaml").read_text())["testing"]["checkpoint"]


def test_newest_test_by_name_and_suffix(tmp_path: Path) -> None:
    for name in ("test_20261128_053400_10", "test_20261128_053400_2", "test_20261128_053400", "test_20261127_235959"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "testing_set_agg_statistics.csv").write_text("loss\n1\n")
    (tmp_path / "test_20261129_000000").mkdir()  # no statistics: a test that did not finish
    assert [p.name for p in finished_tests(tmp_path)] == ["test_20261127_235959", "test_20261128_053400",
                                                          "test_20261128_053400_2", "test_20261128_053400_10"]


def test_load_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="neither a grid folder"):
        miprometheus.load(tmp_path / "no_such_folder")
    empty = miprometheus.load(tmp_path)
    assert isinstance(empty, pd.DataFrame) and len(empty) == 0 and "val_loss" not in empty.columns


def test_importing_the_package_imports_neither_pandas_nor_torch() -> None:
    code = ("import sys, miprometheus; assert 'pandas' not in sys.modules and 'torch' not in sys.modules; "
            "assert callable(miprometheus.load) and 'torch' not in sys.modules; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

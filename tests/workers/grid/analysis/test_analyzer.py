"""The grid analyzer: analysis/summary CSVs, plots and report from synthetic and real grid folders."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from miprometheus.workers.grid.analysis import analyze
from miprometheus.workers.grid.manifest import DONE, FAILED, PENDING, ExperimentRecord, Manifest
from tests.conftest import TINY_SERIAL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = {"LSTM": 0.01, "GRU": 0.001}  # model -> learning rate (a parameter that differs between tasks)
PROBLEMS = ["SerialRecall", "ReverseRecall"]
VAL_EPISODES = [10, 20, 30]


def effective_config(model: str, problem: str, lr: float, seed: int) -> dict[str, Any]:
    """A full effective config, as training_configuration.yaml holds it (every parameter)."""
    problem_section = {"name": problem, "batch_size": 16, "max_sequence_length": 4}
    model_section: dict[str, Any] = {"name": model, "hidden_size": 16, "num_layers": 1}
    if model == "GRU":
        model_section["bias"] = True  # a key only one model has: not a difference between experiments
    return {
        "training": {"problem": problem_section, "optimizer": {"name": "Adam", "lr": lr},
                     # an absent sub-config (null) in some experiments, present in others
                     "curriculum_learning": {"initial_max_sequence_length": 2} if model == "GRU" else None,
                     "terminal_conditions": {"episode_limit": 30}, "seed": seed},
        "validation": {"problem": dict(problem_section), "interval": 10},
        "testing": {"problem": dict(problem_section)},
        "model": model_section,
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def aggregated(loss: float, acc: float, **extra: Any) -> dict[str, Any]:
    """A row of aggregated statistics (mean, min, max, std of each) as validation and tests write them."""
    return {**extra, "loss": loss, "loss_min": loss - 0.05, "loss_max": loss + 0.05, "loss_std": 0.01,
            "acc": acc, "acc_min": acc - 0.1, "acc_max": acc + 0.1, "acc_std": 0.02,
            "seq_length": 4.0, "seq_length_min": 4.0, "seq_length_max": 4.0, "seq_length_std": 0.0,
            "samples_aggregated": 64.0, "episodes_aggregated": 4}


def write_experiment(grid: Path, exp_id: str, config: dict[str, Any], val_loss: float, val_acc: float,
                     test_acc: float | None, wall_s: int = 5, validation: bool = True,
                     run_info_extra: dict[str, Any] | None = None) -> str:
    """An experiment folder in the exact format training writes; returns its path relative to the grid."""
    problem, model = config["training"]["problem"]["name"], config["model"]["name"]
    relative = f"experiments/{exp_id}/{problem}/{model}/20261128_0534{len(exp_id) % 60:02d}"
    folder = grid / relative
    folder.mkdir(parents=True)
    (folder / "training_configuration.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # Validation losses fall towards the best (last) value; accuracies rise to it.
    val_rows = [aggregated(val_loss + 0.2 * (2 - i), val_acc - 0.1 * (2 - i), episode=e, epoch=0)
                for i, e in enumerate(VAL_EPISODES)]
    if validation:
        write_csv(folder / "validation_statistics.csv", val_rows)
    write_csv(folder / "training_statistics.csv",
              [{"episode": e, "epoch": 0, "loss": 2.0 - e / 30, "acc": e / 40, "seq_length": 3.0,
                "max_seq_length": 4.0, "batch_size": 16.0, "time": e * 0.1} for e in range(1, 31)])
    best = val_rows[-1]
    run_info = {"kind": "training", "status": "completed", "seed": config["training"]["seed"],
                "start_time": "2026-11-28T05:34:00+0000", "end_time": f"2026-11-28T05:34:{wall_s:02d}+0000",
                "termination_cause": "limit", "episodes": 30, "epochs": 0, "best_episode": 30,
                "best_validation_statistics": best,
                "last_training_statistics": {"episode": 30, "epoch": 0, "loss": 1.0, "acc": 0.75}}
    run_info.update(run_info_extra or {})
    (folder / "run_info.json").write_text(json.dumps(run_info))
    if test_acc is not None:
        # An older test first: only the newest one counts.
        write_csv(folder / "test_20261128_053400" / "testing_set_agg_statistics.csv", [aggregated(9.0, 0.0)])
        write_csv(folder / "test_20261128_053500" / "testing_set_agg_statistics.csv",
                  [aggregated(val_loss + 0.01, test_acc)])
    return relative


def new_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "grid_20261128_053400"
    (grid / "configs").mkdir(parents=True)
    (grid / "logs").mkdir()
    (grid / "grid_configuration.yaml").write_text("description: a synthetic test grid\ngrid_tasks: []\n")
    return grid


def record(grid: Path, exp_id: str, task: str, rep: int, seed: int, sparse_config: dict[str, Any],
           **fields: Any) -> ExperimentRecord:
    """A manifest record, with the grid's (sparse) config written like the grid runner writes it."""
    config = f"configs/{exp_id}.yaml"
    (grid / config).write_text(yaml.safe_dump(sparse_config, sort_keys=False))
    return ExperimentRecord(id=exp_id, task=task, repetition=rep, sweep={}, seed=seed, config=config,
                            config_hash="h" + exp_id, log=f"logs/{exp_id}.train.log", **fields)


def sparse(model: str, problem: str, lr: float, seed: int) -> dict[str, Any]:
    """What the user wrote for a task: the grid's configs/<id>.yaml, without the defaults."""
    return {"training": {"problem": {"name": problem, "batch_size": 16}, "optimizer": {"lr": lr}, "seed": seed},
            "model": {"name": model}}


# Best validation loss/acc and test acc of each repetition, per (model, problem): known numbers.
VAL_LOSS = {("LSTM", "SerialRecall"): [0.5, 0.6, 0.7], ("LSTM", "ReverseRecall"): [1.0, 1.0, 1.3],
            ("GRU", "SerialRecall"): [0.2, 0.4, 0.9], ("GRU", "ReverseRecall"): [0.3, 0.3, 0.3]}
VAL_ACC = {key: [0.9 - v / 10 for v in values] for key, values in VAL_LOSS.items()}
TEST_ACC = {key: [0.8 - v / 10 for v in values] for key, values in VAL_LOSS.items()}


@pytest.fixture
def synthetic_grid(tmp_path: Path) -> Path:
    """2 models x 2 problems x 3 repetitions, done, plus a failed and a pending experiment."""
    grid = new_grid(tmp_path)
    records = []
    seed = 100
    for model, lr in MODELS.items():
        for problem in PROBLEMS:
            task = f"{model.lower()}_{problem.lower()}"
            for rep in range(3):
                exp_id = f"{len(records):03d}_{task}_r{rep}"
                seed += 1
                key = (model, problem)
                folder = write_experiment(grid, exp_id, effective_config(model, problem, lr, seed),
                                          VAL_LOSS[key][rep], VAL_ACC[key][rep], TEST_ACC[key][rep], wall_s=4 + rep)
                records.append(record(grid, exp_id, task, rep, seed, sparse(model, problem, lr, seed),
                                      status=DONE, attempts=1, folder=folder, exit_code=0, test_status=DONE,
                                      test_folder=folder + "/test_20261128_053500"))
    # A failed repetition of lstm_serialrecall without an experiment folder, and a pending one of gru_reverserecall.
    records.append(record(grid, "012_lstm_serialrecall_r3", "lstm_serialrecall", 3, 201,
                          sparse("LSTM", "SerialRecall", 0.01, 201), status=FAILED, attempts=2, exit_code=1,
                          last_error="RuntimeError: CUDA out of memory (boom)"))
    records.append(record(grid, "013_gru_reverserecall_r3", "gru_reverserecall", 3, 202,
                          sparse("GRU", "ReverseRecall", 0.001, 202), status=PENDING))
    Manifest(grid, records, {"grid_file": "grids/test.yaml", "experiments": len(records)}).save()
    return grid


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_analysis_table(synthetic_grid: Path) -> None:
    result = analyze(synthetic_grid, console=False)
    assert result.analysis_csv == synthetic_grid / "grid_analysis.csv"
    rows = read_csv(result.analysis_csv)
    assert len(rows) == 14 and [r["id"] for r in rows] == [r["id"] for r in result.rows]

    # Differing parameters: the learning rate and the other splits' problems; not the seed (own column), not
    # model.name/training.problem.name (own columns), not keys only some experiments have (GRU's bias, the
    # curriculum sub-config present in some and null in others, defaults missing from the sparse configs).
    assert result.params == ["training.optimizer.lr", "validation.problem.name", "testing.problem.name"]
    columns = list(rows[0])
    assert columns[:4] == ["id", "task", "repetition", "status"]
    assert columns[4:10] == [*result.params, "seed", "model", "problem"]
    for absent in ("training.seed", "model.bias", "model.num_layers", "training.curriculum_learning",
                   "training.curriculum_learning.initial_max_sequence_length", "val_loss_min", "val_acc_std",
                   "test_loss_max", "val_samples_aggregated", "val_episode"):
        assert absent not in columns, absent
    for present in ("val_loss", "val_acc", "val_seq_length", "test_loss", "test_acc", "episodes", "wall_time_s",
                    "termination_cause", "attempts", "last_error", "folder"):
        assert present in columns, present
    assert columns.index("val_loss") < columns.index("val_acc") < columns.index("test_loss")

    first = rows[0]
    assert first["task"] == "lstm_serialrecall" and first["model"] == "LSTM" and first["problem"] == "SerialRecall"
    assert first["training.optimizer.lr"] == "0.01" and first["validation.problem.name"] == "SerialRecall"
    assert first["seed"] == "101" and first["status"] == "done"
    assert float(first["val_loss"]) == pytest.approx(0.5)
    assert float(first["val_acc"]) == pytest.approx(0.85)
    assert float(first["test_acc"]) == pytest.approx(0.75)  # the newest test, not the older one (acc 0)
    assert float(first["test_loss"]) == pytest.approx(0.51)
    assert first["episodes"] == "30" and first["termination_cause"] == "limit"
    assert float(first["wall_time_s"]) == pytest.approx(4.0)
    assert float(rows[2]["wall_time_s"]) == pytest.approx(6.0)
    assert first["folder"].startswith("experiments/000_lstm_serialrecall_r0/SerialRecall/LSTM/")

    failed = rows[12]
    assert failed["status"] == "failed" and failed["attempts"] == "2" and failed["folder"] == ""
    assert failed["last_error"] == "RuntimeError: CUDA out of memory (boom)"
    assert failed["val_loss"] == "" and failed["test_acc"] == "" and failed["seed"] == "201"
    # Its sparse config still gives its parameters.
    assert failed["training.optimizer.lr"] == "0.01" and failed["model"] == "LSTM"
    pending = rows[13]
    assert pending["status"] == "pending" and pending["problem"] == "ReverseRecall"
    assert pending["validation.problem.name"] == ""  # the sparse config has no validation section


def test_summary_table(synthetic_grid: Path) -> None:
    result = analyze(synthetic_grid, console=False)
    rows = read_csv(result.summary_csv)
    assert len(rows) == 4
    columns = list(rows[0])
    # The columns that say nothing are left out: validation/testing.problem.name repeat the problem, and
    # seq_length is 4 in every experiment.
    assert columns[:4] == ["task", "model", "problem", "training.optimizer.lr"]
    assert columns[4:7] == ["n", "failed", "experiments"]
    for absent in ("seed", "repetition", "validation.problem.name", "testing.problem.name", "val_seq_length_mean",
                   "test_seq_length_std"):
        assert absent not in columns, absent
    for stat in ("val_loss", "val_acc", "test_loss", "test_acc"):
        assert f"{stat}_mean" in columns and f"{stat}_std" in columns
    by_task = {r["task"]: r for r in rows}
    for model in MODELS:
        for problem in PROBLEMS:
            row = by_task[f"{model.lower()}_{problem.lower()}"]
            key = (model, problem)
            assert row["model"] == model and row["problem"] == problem
            assert int(row["n"]) == 3
            for column, values in (("val_loss", VAL_LOSS[key]), ("val_acc", VAL_ACC[key]),
                                   ("test_acc", TEST_ACC[key])):
                assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(values)), (key, column)
                assert float(row[f"{column}_std"]) == pytest.approx(statistics.stdev(values)), (key, column)
    assert float(by_task["lstm_serialrecall"]["val_loss_mean"]) == pytest.approx(0.6)
    assert float(by_task["lstm_serialrecall"]["val_loss_std"]) == pytest.approx(0.1)
    assert float(by_task["gru_reverserecall"]["val_loss_std"]) == pytest.approx(0.0)
    # The failed and the pending repetitions are counted, but not in the statistics.
    assert by_task["lstm_serialrecall"]["failed"] == "1" and by_task["lstm_serialrecall"]["experiments"] == "4"
    assert by_task["gru_reverserecall"]["failed"] == "0" and by_task["gru_reverserecall"]["experiments"] == "4"
    assert by_task["gru_serialrecall"]["failed"] == "0"


def test_the_folder_a_task_starts_from_is_no_parameter_so_its_repetitions_stay_one_group(tmp_path: Path) -> None:
    # `after` + `after_folder_keys: [model.init_from.path]`: each repetition starts from another folder.
    grid = new_grid(tmp_path)
    records = []
    for rep in range(3):
        exp_id, seed = f"{rep:03d}_finetune_r{rep}", 10 + rep
        config = effective_config("LSTM", "SerialRecall", 0.01, seed)
        config["model"]["init_from"] = {"path": f"/grid/experiments/source_r{rep}", "strict": False}
        folder = write_experiment(grid, exp_id, config, 0.5 + rep / 10, 0.8, 0.7)
        records.append(record(grid, exp_id, "finetune", rep, seed, sparse("LSTM", "SerialRecall", 0.01, seed),
                              status=DONE, attempts=1, folder=folder, exit_code=0, test_status=DONE,
                              extra={"after": f"source_r{rep}", "after_folder_keys": ["model.init_from.path"]}))
    Manifest(grid, records, {"grid_file": "grids/test.yaml", "experiments": 3}).save()
    result = analyze(grid, console=False)
    assert "model.init_from.path" not in result.params
    [row] = read_csv(result.summary_csv)
    assert row["task"] == "finetune" and row["n"] == "3"
    assert float(row["val_loss_mean"]) == pytest.approx(0.6)


def test_report_plots_and_console(synthetic_grid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = analyze(synthetic_grid, console=True)
    assert sorted(p.name for p in result.plots) == ["ReverseRecall.png", "SerialRecall.png"]
    for plot in result.plots:
        assert plot.parent == synthetic_grid / "plots"
        assert_png(plot)

    report = result.report_html.read_text()
    assert result.report_html == synthetic_grid / "report.html"
    assert "grid_20261128_053400" in report and "a synthetic test grid" in report
    assert "<img src='plots/SerialRecall.png'" in report and "<img src='plots/ReverseRecall.png'" in report
    failures = report.split("<h2>Failures</h2>")[1].split("<h2>")[0]
    assert "012_lstm_serialrecall_r3" in failures and "logs/012_lstm_serialrecall_r3.train.log" in failures
    assert "RuntimeError: CUDA out of memory (boom)" in failures
    assert "013_gru_reverserecall_r3" not in failures  # pending is no failure
    assert result.failures == [{"id": "012_lstm_serialrecall_r3", "stage": "train",
                                "log": "logs/012_lstm_serialrecall_r3.train.log", "exit_code": 1,
                                "last_error": "RuntimeError: CUDA out of memory (boom)"}]
    summary = report.split("<h2>Summary")[1].split("<h2>")[0]
    assert "lstm_serialrecall" in summary and "0.6 ± 0.1" in summary
    assert report.count("<tr") >= 1 + 4 + 1 + 14  # the summary, the failure and every experiment

    out = capsys.readouterr().out
    assert "lstm_serialrecall" in out and "0.6 ± 0.1" in out and "val loss" in out and "test acc" in out
    assert "SerialRecall.png" in out


def test_robust_to_missing_and_odd_data(tmp_path: Path) -> None:
    """Missing run_info fields, no validation CSV, no tests, non-numeric values, a folder that is gone."""
    grid = new_grid(tmp_path)
    records = []
    config = effective_config("LSTM", "SerialRecall", 0.01, 1)
    # Training statistics only (the plot falls back to the smoothed training loss), run_info without times.
    folder = write_experiment(grid, "000_a_r0", config, 0.5, 0.8, None, validation=False,
                              run_info_extra={"start_time": None, "end_time": "not a time"})
    info = json.loads((grid / folder / "run_info.json").read_text())
    info["best_validation_statistics"] = {"loss": "nan?", "acc": 0.7, "note": "text"}
    (grid / folder / "run_info.json").write_text(json.dumps(info))
    records.append(record(grid, "000_a_r0", "a", 0, 1, sparse("LSTM", "SerialRecall", 0.01, 1), status=DONE,
                          folder=folder))
    # A folder without run_info.json and with an empty test folder.
    config2 = effective_config("LSTM", "SerialRecall", 0.01, 2)
    folder2 = write_experiment(grid, "001_a_r1", config2, 0.4, 0.9, None)
    (grid / folder2 / "run_info.json").unlink()
    (grid / folder2 / "test_20261128_060000").mkdir()
    records.append(record(grid, "001_a_r1", "a", 1, 2, sparse("LSTM", "SerialRecall", 0.01, 2), status=DONE,
                          folder=folder2, started=10.0, ended=12.5))
    # A record whose folder does not exist (any more), and one whose config file is missing too.
    records.append(record(grid, "002_a_r2", "a", 2, 3, sparse("LSTM", "SerialRecall", 0.01, 3), status=FAILED,
                          folder="experiments/gone", last_error=None))
    rec = record(grid, "003_b_r0", "b", 0, 4, {}, status=PENDING)
    (grid / rec.config).unlink()
    records.append(rec)
    Manifest(grid, records, {}).save()

    result = analyze(grid, console=True)
    rows = {r["id"]: r for r in read_csv(result.analysis_csv)}
    assert rows["000_a_r0"]["val_loss"] == "nan?" and rows["000_a_r0"]["val_acc"] == "0.7"
    assert rows["000_a_r0"]["wall_time_s"] == "" and "test_acc" not in rows["000_a_r0"]  # no test anywhere
    assert rows["001_a_r1"]["val_loss"] == "" and float(rows["001_a_r1"]["wall_time_s"]) == pytest.approx(2.5)
    assert rows["002_a_r2"]["status"] == "failed" and rows["003_b_r0"]["model"] == ""
    summary = {r["task"]: r for r in read_csv(result.summary_csv)}
    # Only the numeric value counts: acc from one experiment, loss from none.
    assert summary["a"]["n"] == "2" and summary["a"]["failed"] == "1"
    assert float(summary["a"]["val_acc_mean"]) == pytest.approx(0.7) and summary["a"]["val_acc_std"] == "0.0"
    assert "val_loss_mean" not in summary["a"]  # no experiment has a numeric validation loss
    assert [p.name for p in result.plots] == ["SerialRecall.png"]
    assert_png(result.plots[0])
    assert [f["id"] for f in result.failures] == ["002_a_r2"]
    assert result.report_html.is_file()


def test_empty_grid(tmp_path: Path) -> None:
    grid = new_grid(tmp_path)
    Manifest(grid, [], {}).save()
    result = analyze(grid, console=True)
    assert read_csv(result.analysis_csv) == [] and result.plots == [] and result.summary == []
    assert "No learning curves yet" in result.report_html.read_text()


def test_real_trainings(tmp_path: Path) -> None:
    """Two real tiny trainings (a hidden_size sweep), tested, placed in a grid layout."""
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    grid = new_grid(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_SERIAL)
    records = []
    for index, hidden in enumerate((8, 16)):
        exp_id = f"{index:03d}_tiny_s{index}_r0"
        overrides = [f"model.hidden_size={hidden}", "training.terminal_conditions.episode_limit=40"]
        result = runs.train([str(config)], overrides, RunOptions(expdir=grid / "experiments" / exp_id,
                                                                 progress=False, command_line=["t"]),
                            test_after=True)
        tree = yaml.safe_load(TINY_SERIAL)
        tree["model"]["hidden_size"] = hidden
        (grid / "configs").mkdir(exist_ok=True)
        (grid / "configs" / f"{exp_id}.yaml").write_text(yaml.safe_dump(tree))
        records.append(ExperimentRecord(
            id=exp_id, task="tiny", repetition=0, sweep={"model.hidden_size": hidden}, seed=7,
            config=f"configs/{exp_id}.yaml", config_hash=str(index), status=DONE, attempts=1,
            folder=result.folder.relative_to(grid).as_posix(), log=f"logs/{exp_id}.train.log", exit_code=0,
            test_status=DONE, test_folder=result.test_folder.relative_to(grid).as_posix()))
    Manifest(grid, records, {}).save()

    analysis = analyze(grid, console=True)
    assert analysis.params == ["model.hidden_size"]
    rows = read_csv(analysis.analysis_csv)
    assert [r["model.hidden_size"] for r in rows] == ["8", "16"]
    for row in rows:
        assert row["seed"] == "7" and row["model"] == "LSTM" and row["problem"] == "SerialRecall"
        assert row["episodes"] == "40" and row["termination_cause"] == "limit"
        assert 0 <= float(row["val_acc"]) <= 1 and float(row["val_loss"]) > 0
        assert 0 <= float(row["test_acc"]) <= 1 and float(row["test_loss"]) > 0
        assert float(row["wall_time_s"]) >= 0
    summary = read_csv(analysis.summary_csv)
    assert len(summary) == 2 and all(r["n"] == "1" and float(r["val_loss_std"]) == 0.0 for r in summary)
    assert [p.name for p in analysis.plots] == ["SerialRecall.png"]
    assert_png(analysis.plots[0])


def test_training_curve_fallback_and_alignment(tmp_path: Path) -> None:
    """Without validation the plot shows the smoothed training loss; unshared episodes are interpolated."""
    from miprometheus.workers.grid.analysis.collect import read_curves
    from miprometheus.workers.grid.analysis.plots import align, curve

    grid = new_grid(tmp_path)
    config = effective_config("GRU", "ReverseRecall", 0.001, 5)
    folder = write_experiment(grid, "000_t_r0", config, 0.5, 0.8, None, validation=False)
    Manifest(grid, [record(grid, "000_t_r0", "t", 0, 5, {}, status=DONE, folder=folder)], {}).save()
    result = analyze(grid, console=False)
    assert [p.name for p in result.plots] == ["ReverseRecall.png"]
    assert_png(result.plots[0])

    episodes, values, from_validation = curve(read_curves(grid / folder), "loss")
    assert not from_validation and episodes == [float(e) for e in range(1, 31)]
    # A rolling mean over 1/20 of 30 points (window 1) keeps the values; the training loss is 2 - e/30.
    assert values == pytest.approx([2.0 - e / 30 for e in range(1, 31)])

    xs, mean, std = align([([10.0, 20.0, 30.0], [1.0, 2.0, 3.0]), ([15.0, 25.0], [1.5, 2.5])])
    assert list(xs) == [15.0, 20.0, 25.0] and list(mean) == pytest.approx([1.5, 2.0, 2.5])
    assert list(std) == pytest.approx([0.0, 0.0, 0.0])
    xs, mean, std = align([([10.0, 20.0], [1.0, 3.0]), ([10.0, 20.0, 30.0], [3.0, 5.0, 9.0])])
    assert list(xs) == [10.0, 20.0] and list(mean) == pytest.approx([2.0, 4.0])
    assert list(std) == pytest.approx([2 ** 0.5, 2 ** 0.5])


def test_the_console_table_shows_the_grid_report_statistics(tmp_path, capsys):
    """grid_settings.report_statistics adds columns (mean ± std) beside the main statistic, for each test setting."""
    from miprometheus.workers.grid.analysis.report import print_console

    row = {"n": 3, "failed": 0, "val_loss_mean": 0.5, "val_loss_std": 0.1, "val_acc_mean": 0.8, "val_acc_std": 0.01,
           "test_acc_mean": 0.75, "test_acc_std": 0.02, "test_acc_relational_mean": 0.625,
           "test_acc_relational_std": 0.03}
    statistics = ["val_loss", "val_acc", "test_acc", "test_acc_relational"]
    print_console(tmp_path, [row], ["rn"], statistics, [], ["acc_relational", "acc_missing"])
    out = capsys.readouterr().out
    assert "test acc_relational" in out and "0.625" in out and "acc_missing" not in out

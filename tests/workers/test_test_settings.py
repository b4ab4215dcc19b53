"""Several named test settings in one experiment (``testing.settings``): validation, mip test, grid analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import miprometheus
from miprometheus.config.experiment_spec import validate
from miprometheus.config.loader import load_config
from miprometheus.errors import ConfigError
from miprometheus.statistics import read_csv
from miprometheus.workers.grid.folders import finished_tests
from tests.conftest import TINY_SERIAL, run_mip

SETTINGS = """
  settings:
    length_5: {problem: {min_sequence_length: 5, max_sequence_length: 5}}
    length_8: {problem: {min_sequence_length: 8, max_sequence_length: 8, size: 32}}
"""
WITH_SETTINGS = TINY_SERIAL.replace(
    "testing:\n  problem: {name: SerialRecall, batch_size: 16, min_sequence_length: 4, max_sequence_length: 4, "
    "size: 64}\n",
    "testing:\n  problem: {name: SerialRecall, batch_size: 16, size: 64}\n" + SETTINGS.lstrip("\n"))


def write(tmp_path: Path, text: str = WITH_SETTINGS, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_each_setting_is_the_testing_section_changed_by_its_values(tmp_path):
    assert "settings:" in WITH_SETTINGS
    spec = validate(load_config([str(write(tmp_path))], []))
    assert list(spec.test_settings) == ["length_5", "length_8"]  # the config's order
    five, eight = spec.test_settings["length_5"], spec.test_settings["length_8"]
    assert (five.problem_params.min_sequence_length, five.problem_params.max_sequence_length) == (5, 5)
    assert five.problem_params.size == 64 and eight.problem_params.size == 32  # the shared value, or its own
    assert five.problem_params.batch_size == eight.problem_params.batch_size == 16
    assert list(spec.tests()) == ["length_5", "length_8"]
    # The effective configuration keeps every setting whole: re-validating it gives the same settings.
    tree = spec.effective_tree()
    assert tree["testing"]["settings"]["length_8"]["problem"]["max_sequence_length"] == 8
    again = write(tmp_path, yaml.safe_dump(tree), "effective.yaml")
    assert validate(load_config([str(again)], [])).test_settings["length_8"].problem_params.size == 32


def test_without_settings_the_testing_section_is_the_one_test(tmp_path):
    spec = validate(load_config([str(write(tmp_path, TINY_SERIAL))], []))
    assert spec.test_settings == {} and list(spec.tests()) == [None]


@pytest.mark.parametrize("settings, message", [
    ("  settings: [length_5]\n", "'testing.settings' must be a mapping"),
    ("  settings: {}\n", "'testing.settings' must map setting names to sections"),
    ("  settings:\n    bad/name: {problem: {max_sequence_length: 5}}\n", "test setting name 'bad/name'"),
    ("  settings:\n    long: {problem: {max_sequence_lenght: 5}}\n",
     "testing.settings.long.problem.max_sequence_lenght"),
    ("  settings:\n    long: {num_batchez: 2}\n", "testing.settings.long.num_batchez"),
    ("  settings:\n    long: {settings: {x: {}}}\n", "test settings do not nest"),
    ("  settings:\n    long: 3\n", "must be a section (a mapping), or false to drop it"),
    ("  settings:\n    long: {problem: {min_sequence_length: 9, max_sequence_length: 5}}\n",
     "must not exceed max_sequence_length"),
])
def test_bad_settings_are_named(tmp_path, settings, message):
    text = WITH_SETTINGS.replace(SETTINGS.lstrip("\n"), settings)
    with pytest.raises(ConfigError) as error:
        spec = validate(load_config([str(write(tmp_path, text))], []))
        from miprometheus.workers.components import build_problem

        for split in spec.test_settings.values():  # problems check their own values when built
            build_problem(split)
    assert message in str(error.value)


@pytest.mark.slow
def test_mip_check_reports_every_setting_and_a_bad_one_exits_2(tmp_path):
    result = run_mip("check", write(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "testing.length_5: model LSTM" in result.stdout and "testing.length_8: model LSTM" in result.stdout
    bad = write(tmp_path, WITH_SETTINGS.replace("length_8: {problem: {", "length_8: {problem: {colour: red, "),
                "bad.yaml")
    result = run_mip("check", bad)
    assert result.returncode == 2 and "testing.settings.length_8.problem.colour" in result.stderr


def test_train_test_writes_one_folder_per_setting(tmp_path):
    """A real training, tested at two lengths: statistics, configs and the grid-analysis columns per setting."""
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    options = RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["t"])
    result = runs.train([str(write(tmp_path))], ["training.terminal_conditions.episode_limit=20"], options,
                        test_after=True)
    folder = result.test_folder
    assert sorted(p.name for p in folder.iterdir()) == ["length_5", "length_8", "tester.log",
                                                        "testing_configuration.yaml"]
    for name, length, samples in (("length_5", 5, 64), ("length_8", 8, 32)):
        agg = read_csv(folder / name / "testing_set_agg_statistics.csv")[0]
        assert float(agg["seq_length"]) == length and float(agg["samples_aggregated"]) == samples
        assert float(agg["acc"]) == pytest.approx(result.test[f"{name}/acc"])
        rows = read_csv(folder / name / "testing_statistics.csv")
        assert len(rows) == samples // 16
        own = yaml.safe_load((folder / name / "testing_configuration.yaml").read_text())["testing"]
        assert own["setting"] == name and own["problem"]["max_sequence_length"] == length and own["checkpoint"]
    assert finished_tests(result.folder) == [folder / "length_5", folder / "length_8"]
    # The two settings draw different data (their own seeds), the same data at every test.
    again, stats = runs.test(result.folder, [], options)
    assert stats == result.test
    assert finished_tests(result.folder)[-2:] == [again / "length_5", again / "length_8"]

    table = miprometheus.load(tmp_path / "experiments")
    row = table.iloc[0]
    assert row["test[length_5]_acc"] == pytest.approx(result.test["length_5/acc"])
    assert row["test[length_8]_seq_length"] == pytest.approx(8.0)
    assert "test_acc" not in table.columns  # no unnamed test was run
    columns = list(table.columns)
    assert columns.index("val_loss") < columns.index("test[length_5]_loss") < columns.index("test[length_8]_loss")


@pytest.mark.slow
def test_grid_run_prints_a_column_per_setting(tmp_path):
    (tmp_path / "task.yaml").write_text(WITH_SETTINGS.replace("seed: 7", "seed: -1").replace(
        "episode_limit: 60", "episode_limit: 20"))
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid_tasks:\n  - {name: serial, default_configs: task.yaml}\n"
                    "grid_settings: {experiment_repetitions: 2, max_concurrent_runs: 2}\n")
    result = run_mip("grid", "run", grid, "--expdir", tmp_path / "exp", timeout=600)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "val loss" in line)
    assert "length_5 acc" in header and "length_8 acc" in header and "test acc" not in header
    summary = read_csv(next((tmp_path / "exp").rglob("grid_summary.csv")))
    assert summary[0]["test[length_8]_acc_mean"] and float(summary[0]["n"]) == 2


@pytest.mark.slow
def test_mip_test_setting_chooses_settings_and_an_unknown_one_exits_2(tmp_path):
    config = write(tmp_path, WITH_SETTINGS.replace("episode_limit: 60", "episode_limit: 10"))
    run_mip("train", config, "--expdir", tmp_path / "exp", check=True)
    experiment = next((tmp_path / "exp").rglob("training_configuration.yaml")).parent
    result = run_mip("test", experiment, "--setting", "length_8")
    assert result.returncode == 0, result.stderr
    (test,) = list(experiment.glob("test_*"))
    assert sorted(p.name for p in test.iterdir() if p.is_dir()) == ["length_8"]
    bad = run_mip("test", experiment, "--setting", "length_9")
    assert bad.returncode == 2 and "unknown test setting 'length_9'; known: length_5, length_8" in bad.stderr
    assert list(experiment.glob("test_*")) == [test]  # nothing written for bad input

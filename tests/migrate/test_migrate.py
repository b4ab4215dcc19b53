"""``mip migrate`` and the original's entry points: configs of the original MI-Prometheus (original_configs.py,
written in its style) read as it read them, converted, checked and reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from miprometheus import cli
from miprometheus.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ConfigError
from miprometheus.migrate.command import run_original
from miprometheus.migrate.original import load_original
from tests.conftest import SHARED_MNIST, experiment_dirs
from tests.migrate.original_configs import original_text, write_originals


def body(path: Path) -> dict:
    """A converted file without its report (comment lines)."""
    return yaml.safe_load(path.read_text())


def header(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the original-format configs, the directory the original ran in (the working directory), their
    data folders in an empty folder, so that their data is missing wherever the tests run."""
    root = write_originals(tmp_path / "original", tmp_path / "no_data")
    monkeypatch.chdir(root)
    return root


def original_value(path: Path, key: str) -> object:
    """The value of the dotted ``key`` in the original-format config ``path`` (read as YAML, defaults not followed)."""
    value = yaml.safe_load(path.read_text())
    for part in key.split("."):
        value = value[part]
    return value


def point_at(path: Path, key: str, folder: Path) -> None:
    """Make the original-format config ``path`` read its data from ``folder``: its value of ``key`` replaced."""
    path.write_text(path.read_text().replace(str(original_value(path, key)), str(folder)))


def migrate(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = cli.main(["migrate", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TINY = """
training:
    problem: {{name: SerialRecallCommandLines, batch_size: 4, min_sequence_length: 1, max_sequence_length: 3}}
    optimizer: {{name: Adam, lr: {lr}}}
    terminal_conditions: {{episode_limit: 4}}
    seed_torch: 3
validation:
    partial_validation_interval: 2
    problem: {{name: SerialRecallCommandLines, batch_size: 4, min_sequence_length: 3, max_sequence_length: 3}}
testing:
    problem: {{name: SerialRecallCommandLines, batch_size: 4, min_sequence_length: 3, max_sequence_length: 3}}
model: {{name: LSTM, hidden_state_size: {hidden}, num_layers: 1}}
"""


# --- reading as the original read ------------------------------------------------------------------------------
def test_the_first_listed_file_wins_and_its_defaults_come_before_the_next_file(tmp_path: Path) -> None:
    write(tmp_path / "configs/a.yaml", "default_configs: configs/c.yaml\ntraining: {optimizer: {lr: 0.1}}\n")
    write(tmp_path / "configs/b.yaml", "training: {optimizer: {lr: 0.2}, problem: {batch_size: 8}}\n"
                                       "model: {hidden_state_size: 7}\n")
    write(tmp_path / "configs/c.yaml", "training: {optimizer: {lr: 0.3}, problem: {batch_size: 16}}\n"
                                       "model: {hidden_state_size: 5, name: LSTM}\n")
    top = write(tmp_path / "configs/top.yaml", "default_configs: 'configs/a.yaml, configs/b.yaml'\n"
                                               "model: {num_layers: 2}\n")
    original = load_original([top], tmp_path)
    # the original's order: top, a, a's default c, then b; the first one read wins
    assert [p.name for p in original.files] == ["top.yaml", "a.yaml", "c.yaml", "b.yaml"]
    assert original.tree["training"] == {"optimizer": {"lr": 0.1}, "problem": {"batch_size": 16}}
    assert original.tree["model"] == {"hidden_state_size": 5, "name": "LSTM", "num_layers": 2}
    assert original.where("training.problem.batch_size").endswith("c.yaml:1")


def test_a_default_is_looked_for_under_the_root_then_beside_its_file(tmp_path: Path) -> None:
    write(tmp_path / "root/shared.yaml", "model: {name: LSTM}\n")
    write(tmp_path / "elsewhere/local.yaml", "training: {seed_numpy: 1}\n")
    top = write(tmp_path / "elsewhere/top.yaml", "default_configs: shared.yaml,local.yaml\n")
    original = load_original([top], tmp_path / "root")
    assert original.tree == {"model": {"name": "LSTM"}, "training": {"seed_numpy": 1}}


# --- mip migrate, per family ------------------------------------------------------------------------------
def test_memory_models_and_a_grid_file_convert_and_pass_mip_check(repo: Path, capsys) -> None:
    code, out = migrate(capsys, "configs/dnc", "configs/ntm", "configs/grids", "--out", "converted")
    assert code == EXIT_OK, out
    assert ("5 file(s), 1 of them grid files, 2 of them default configs only, 4 config(s): 4 converted, 0 need data, "
            "0 cannot convert") in out
    dnc = body(repo / "converted/configs/dnc/serial_recall.yaml")
    assert dnc["model"] == {"name": "DNC", "hidden_size": 64, "word_size": 10, "num_addresses": -1,
                            "num_read_heads": 1, "controller": "lstm", "non_linearity": "sigmoid"}
    assert dnc["training"]["problem"]["name"] == "SerialRecall"
    assert dnc["training"]["seed"] == 2452
    assert dnc["training"]["terminal_conditions"] == {"loss_stop": 1e-4, "episode_limit": 4000}
    # partial validation: one batch every 200 episodes, as the online trainer did
    assert {k: dnc["validation"][k] for k in ("interval", "num_batches", "every_epoch")} == {
        "interval": 200, "num_batches": 1, "every_epoch": False}
    assert dnc["testing"]["num_batches"] == 4
    assert list(dnc["testing"]["settings"]) == ["min_sequence_length_20_max_sequence_length_20",
                                               "min_sequence_length_50_max_sequence_length_50"]
    report = header(repo / "converted/configs/dnc/serial_recall.yaml")
    assert "renamed        model.memory_content_size -> model.word_size" in report
    assert "dropped        training.cuda: the device is chosen on the command line here" in report
    assert "mip check      passed: training: model DNC" in report
    ntm = body(repo / "converted/configs/ntm/reverse_recall.yaml")
    assert ntm["model"] == {"name": "NTM", "controller": "rnn", "hidden_size": 20, "non_linearity": "sigmoid",
                            "num_read_heads": 1, "shift_size": 3, "use_content_addressing": True,
                            "num_content_bits": 10, "num_addresses": -1, "memory_init": "zero"}
    # the misspelt limit was ignored by the original: its run went to the online trainer's 100,000 episodes
    assert ntm["training"]["terminal_conditions"] == {"loss_stop": 1e-5, "episode_limit": 100_000}
    assert "training.terminal_conditions.eposides_limit: the original ignored it" in out
    # the curriculum grew every 500 episodes: one epoch is 500 episodes of 32 here
    assert ntm["training"]["problem"]["size"] == 16_000
    assert ntm["training"]["curriculum_learning"] == {"initial_max_sequence_length": 3}
    grid = body(repo / "converted/configs/grids/grid_trainer_memory.yaml")
    assert grid["grid_settings"] == {"experiment_repetitions": 3, "max_concurrent_runs": 2}
    tasks = [body(repo / "converted/configs/grids" / task["default_configs"]) for task in grid["grid_tasks"]]
    assert [t["model"]["name"] for t in tasks] == ["NTM", "DNC"]
    # task overwrite > grid_overwrite > the task's configs
    assert tasks[1]["model"]["hidden_size"] == 32 and tasks[0]["model"]["hidden_size"] == 20
    assert all(t["training"]["problem"]["batch_size"] == 16 for t in tasks)
    assert all(t["training"]["terminal_conditions"] == {"loss_stop": 1e-4, "episode_limit": 2000} for t in tasks)
    report = (repo / "converted/migration_report.md").read_text()
    assert "configs/dnc/default_dnc.yaml: not converted on its own: it lacks a training or testing section" in report


def test_mnist_configs_need_their_data_then_convert_where_it_is(repo: Path, capsys, blank_mnist: Path) -> None:
    code, out = migrate(capsys, "configs/vision", "configs/thalnet", "--out", "converted")
    assert code == EXIT_OK, out
    assert "3 config(s): 0 converted, 3 need data, 0 cannot convert" in out
    assert "MNIST train data not found" in out
    pixel = body(repo / "converted/configs/thalnet/sequential_pixel_mnist.yaml")
    # the original's index [first, last] included the last: [55000, 59999] is 55000 up to 60000 (excluded)
    assert pixel["validation"]["sampler"] == {"name": "SubsetSequentialSampler", "indices": [55000, 60000]}
    original = repo / "configs/thalnet/sequential_pixel_mnist.yaml"
    assert pixel["training"]["problem"]["data_folder"] == original_value(original, "training.problem.root_dir")
    assert pixel["model"] == {"name": "ThalNet", "context_size": 32, "input_item_size": 1, "output_item_size": 10,
                              "center_size_per_module": 32, "num_modules": 4}
    lenet = body(repo / "converted/configs/vision/lenet5_mnist.yaml")
    assert lenet["training"]["terminal_conditions"] == {"loss_stop": 1e-5, "epoch_limit": 10}  # offline defaults
    assert {k: lenet["validation"][k] for k in ("interval", "every_epoch")} == {"interval": 100, "every_epoch": True}
    assert "training.terminal_conditions.epochs_limit: the original ignored it" in out
    # where the digits are, the same configs pass mip check
    for name in ("lenet5_mnist", "simplecnn_mnist_t10k"):
        path = repo / f"configs/vision/{name}.yaml"
        point_at(path, "training.problem.mnist_folder" if name == "lenet5_mnist" else "training.problem.data_folder",
                 blank_mnist)
    code, out = migrate(capsys, "configs/vision", "--out", "converted", "--force")
    assert code == EXIT_OK, out
    assert "2 config(s): 2 converted, 0 need data, 0 cannot convert" in out
    cnn = body(repo / "converted/configs/vision/simplecnn_mnist_t10k.yaml")
    assert cnn["training"]["sampler"]["indices"] == [0, 8000]  # the original's string '[0 8000]': a range
    assert cnn["model"]["pool2_kernel"] == 2 and cnn["model"]["conv1_out_channels"] == 6


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"no MNIST in {SHARED_MNIST}")
def test_the_t10k_config_checks_against_the_real_digits(repo: Path, capsys) -> None:
    path = repo / "configs/vision/simplecnn_mnist_t10k.yaml"
    point_at(path, "training.problem.data_folder", SHARED_MNIST)
    code, out = migrate(capsys, str(path), "--out", "converted")
    assert code == EXIT_OK and "1 converted, 0 need data" in out, out


def test_sort_of_clevr_converts_except_the_pretrained_encoder_and_a_problem_not_here(repo: Path, capsys) -> None:
    code, out = migrate(capsys, "configs/vqa_baselines", "configs/cog", "--out", "converted")
    assert code == EXIT_FAILED, out  # something cannot be converted
    assert "4 config(s): 2 converted, 0 need data, 2 cannot convert" in out
    cnn = body(repo / "converted/configs/vqa_baselines/cnn_lstm_sort_of_clevr.yaml")
    problem = cnn["training"]["problem"]
    # 2,800 questions of the original: 100 scenes of 28 questions on average
    assert problem["num_scenes"] == 100 and "dataset_size" not in problem
    assert problem["data_folder"] == str(repo / "data/sort-of-clevr")  # relative to where the original ran
    assert cnn["validation"]["problem"]["split"] == "validation"  # the original's 'val'
    assert cnn["model"] == {"name": "CNN_LSTM", "question_hidden_size": 64, "classifier_hidden": 256}
    san = body(repo / "converted/configs/vqa_baselines/san_sort_of_clevr.yaml")
    assert san["model"] == {"name": "SAN", "question_hidden_size": 64, "classifier_hidden": 256,
                            "attention_size": 128, "num_hops": 2}
    one_hop = repo / "converted/configs/vqa_baselines/san_resnet_sort_of_clevr.yaml"
    assert body(one_hop)["model"]["num_hops"] == 1
    assert "NO EQUIVALENT  model.use_pretrained_cnn: True: a pretrained ResNet-18 image encoder" in header(one_hop)
    assert "san_resnet_sort_of_clevr.yaml: cannot convert" in out
    assert "training.problem.name: COG: the COG dataset (Yang et al. 2018) is not implemented here" in out
    assert "converted      model.name: MACNetwork -> MAC" in out


# --- precedence: mip migrate and the original's entry points ---------------------------------------------------
def test_migrate_takes_the_first_listed_default(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "configs/first.yaml", TINY.format(lr=0.01, hidden=8))
    write(tmp_path / "configs/second.yaml", TINY.format(lr=0.002, hidden=16))
    write(tmp_path / "configs/both.yaml", "default_configs: configs/first.yaml, configs/second.yaml\n")
    write(tmp_path / "configs/reversed.yaml", "default_configs: configs/second.yaml, configs/first.yaml\n")
    code, out = migrate(capsys, "configs/both.yaml", "configs/reversed.yaml", "--out", "out")
    assert code == EXIT_OK, out
    both, swapped = body(tmp_path / "out/configs/both.yaml"), body(tmp_path / "out/configs/reversed.yaml")
    assert (both["training"]["optimizer"]["lr"], both["model"]["hidden_size"]) == (0.01, 8)
    assert (swapped["training"]["optimizer"]["lr"], swapped["model"]["hidden_size"]) == (0.002, 16)


def test_the_online_trainer_alias_trains_the_first_listed_file_s_values(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", TINY.format(lr=0.01, hidden=8))
    write(tmp_path / "b.yaml", TINY.format(lr=0.002, hidden=16))
    monkeypatch.setattr(sys, "argv", ["mip-online-trainer", "--c", "a.yaml, b.yaml", "--outdir", "exps",
                                      "--no-progress"])
    assert cli.online_trainer() == EXIT_OK, capsys.readouterr()
    assert "read a.yaml, b.yaml as the original did (the first listed wins)" in capsys.readouterr().err
    (folder,) = experiment_dirs(tmp_path / "exps")
    saved = yaml.safe_load((folder / "training_configuration.yaml").read_text())
    assert saved["training"]["optimizer"]["lr"] == 0.01 and saved["model"]["hidden_size"] == 8
    assert saved["validation"]["num_batches"] == 1 and saved["validation"]["interval"] == 2


def test_the_entry_points_pass_this_project_s_configs_first_listed_last(tmp_path: Path) -> None:
    first = write(tmp_path / "first.yaml", "training: {seed: 1}\nvalidation: {interval: 5}\n")
    second = write(tmp_path / "second.yaml", "training: {seed: 2}\nvalidation: {interval: 9}\n")
    calls: list[list[str]] = []
    assert run_original(["train"], [str(first), str(second)], ["--expdir", "x"], "online",
                        lambda argv: calls.append(argv) or 0) == 0
    # mip train lets the later file win: the first listed goes last
    assert calls == [["train", str(second), str(first), "--expdir", "x"]]


def test_the_grid_trainer_alias_converts_tasks_with_the_original_s_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", TINY.format(lr=0.01, hidden=8))
    write(tmp_path / "b.yaml", TINY.format(lr=0.002, hidden=16))
    grid = write(tmp_path / "grid.yaml", "grid_tasks:\n  - default_configs: b.yaml, a.yaml\n"
                                         "    overwrite: {training: {optimizer: {lr: 0.5}}}\n"
                                         "grid_overwrite:\n"
                                         "  training: {optimizer: {lr: 0.4}, problem: {batch_size: 2}}\n"
                                         "grid_settings: {experiment_repetitions: 1, max_concurrent_runs: 1}\n")
    seen = {}

    def main(argv: list[str]) -> int:
        seen["argv"] = argv
        converted = Path(argv[2])
        task = yaml.safe_load(converted.read_text())["grid_tasks"][0]["default_configs"]
        seen["task"] = yaml.safe_load((converted.parent / task).read_text())
        return 0

    assert run_original(["grid", "train"], [str(grid)], ["--expdir", "x"], None, main, "mip-grid-trainer-cpu") == 0
    assert seen["argv"][:2] == ["grid", "train"] and seen["argv"][3:] == ["--expdir", "x"]
    task = seen["task"]
    assert task["training"]["optimizer"]["lr"] == 0.5  # the task's overwrite over grid_overwrite over its configs
    assert task["training"]["problem"]["batch_size"] == 2
    assert task["model"]["hidden_size"] == 16  # b.yaml, listed first
    # a grid without grid_settings.trainer ran the original's default trainer, the offline one
    assert task["training"]["terminal_conditions"] == {"loss_stop": 1e-5, "episode_limit": 4, "epoch_limit": 10}


# --- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("files", "message"), [
    ({"a.yaml": "default_configs: b.yaml\nmodel: {name: LSTM}\n", "b.yaml": "default_configs: a.yaml\n"},
     "default_configs form a cycle: {root}/a.yaml -> {root}/b.yaml -> {root}/a.yaml"),
    ({"a.yaml": "default_configs: configs/gone.yaml\nmodel: {name: LSTM}\n"},
     "{root}/a.yaml:1: default_configs lists 'configs/gone.yaml', which is missing"),
    ({"a.yaml": "problem_train: {name: serial_recall}\nsettings: {max_episodes: 10}\n"},
     "is a config of MI-Prometheus's early versions"),
    ({"a.yaml": "epochs: 3\nlearning_rate: 0.1\n"}, "{root}/a.yaml: is not an original MI-Prometheus config"),
    ({"a.yaml": "default_configs: [b.yaml]\nmodel: {name: LSTM}\n"}, "its default_configs is a YAML list"),
    ({"a.yaml": "model: {name: LSTM}\nvalidation: {interval: 10}\n"},
     "{root}/a.yaml:2: is not an original MI-Prometheus config: validation.interval belongs to this project's format"),
])
def test_bad_input_exits_2_naming_it_and_writes_nothing(tmp_path: Path, capsys, monkeypatch, files, message) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        write(tmp_path / name, text)
    code, out = migrate(capsys, "a.yaml", "--out", "out")
    assert code == EXIT_BAD_INPUT
    assert message.format(root=tmp_path) in out
    assert not (tmp_path / "out").exists()


def test_outputs_are_replaced_only_with_force(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", TINY.format(lr=0.01, hidden=8))
    assert migrate(capsys, "a.yaml", "--out", "out")[0] == EXIT_OK
    write(tmp_path / "a.yaml", TINY.format(lr=0.5, hidden=8))
    code, out = migrate(capsys, "a.yaml", "--out", "out")
    assert code == EXIT_BAD_INPUT and f"--out {tmp_path / 'out'} already holds {tmp_path / 'out/a.yaml'}" in out
    assert body(tmp_path / "out/a.yaml")["training"]["optimizer"]["lr"] == 0.01
    assert migrate(capsys, "a.yaml", "--out", "out", "--force")[0] == EXIT_OK
    assert body(tmp_path / "out/a.yaml")["training"]["optimizer"]["lr"] == 0.5


def test_an_entry_point_refuses_what_has_no_equivalent(tmp_path: Path, capsys) -> None:
    config = write(tmp_path / "cog.yaml", original_text("configs/cog/cog_mac.yaml", tmp_path / "no_data"))
    code = run_original(["train"], [str(config)], [], None, lambda argv: pytest.fail("ran"), "mip-offline-trainer")
    assert code == EXIT_BAD_INPUT
    assert "mip-offline-trainer: error: " in capsys.readouterr().err


def test_loading_refuses_a_file_that_is_no_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds a list, not a mapping"):
        load_original([write(tmp_path / "a.yaml", "- 1\n- 2\n")], tmp_path)


def test_the_tester_alias_without_configs_tests_the_folder_of_its_weights(monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(sys, "argv", ["mip-tester", "--m", "runs/exp/models/model_best.pt", "--savetag", "t"])
    assert cli.tester() == 0
    assert calls == [["test", "runs/exp", "--model", "runs/exp/models/model_best.pt", "--savetag", "t"]]


def test_a_root_that_is_no_folder_is_bad_input(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", TINY.format(lr=0.01, hidden=8))
    code, out = migrate(capsys, "a.yaml", "--out", "out", "--root", "missing")
    assert code == EXIT_BAD_INPUT and f"--root {tmp_path / 'missing'} is not a folder" in out
    assert not (tmp_path / "out").exists()

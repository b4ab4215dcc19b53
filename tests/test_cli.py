"""The `mip` command: exit codes and messages for bad input; nothing already written is lost."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, experiment_dirs, run_mip


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny trained experiment folder, shared by the tests of this module."""
    from tests.conftest import TINY_SERIAL

    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(TINY_SERIAL)
    run_mip("train", root / "tiny.yaml", "training.terminal_conditions.episode_limit=20", "--expdir",
            root / "exp", cwd=root, check=True)
    return experiment_dirs(root / "exp")[0]


def test_help_and_list():
    result = run_mip("--help")
    assert result.returncode == 0
    for command in ["train", "test", "check", "summary", "list", "split"]:
        assert command in result.stdout
    listed = run_mip("list", "models")
    assert listed.returncode == 0
    for name in ["LSTM", "LeNet5", "SimpleConvNet"]:
        assert name in listed.stdout
    detail = run_mip("list", "problems", "SerialRecall")
    assert detail.returncode == 0 and "max_sequence_length" in detail.stdout and "int" in detail.stdout
    assert run_mip("list", "models", "LSTMM").returncode == 2


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  problem:\n    name: SerialRecall\n    batch_size: [1\nmodel: {name: LSTM}\n")
    result = run_mip("train", bad, "--expdir", tmp_path / "exp")
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "YAML syntax error" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()  # nothing is created for bad input


def test_typo_names_file_line_key_and_suggestion(tmp_path, tiny_config):
    text = tiny_config.read_text().replace("terminal_conditions: {episode_limit: 60}",
                                           "terminal_conditions: {episodes_limit: 60}")
    tiny_config.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "episodes_limit" in row)
    result = run_mip("train", tiny_config, "--expdir", tmp_path / "exp")
    assert result.returncode == 2
    assert f"{tiny_config}:{line}" in result.stderr
    assert "training.terminal_conditions.episodes_limit" in result.stderr
    assert "did you mean 'training.terminal_conditions.episode_limit'" in result.stderr.lower()


@pytest.mark.slow
def test_wrong_type_and_unknown_names(tiny_config):
    result = run_mip("check", tiny_config, "training.problem.batch_size=many", "model.name=LeNet")
    assert result.returncode == 2
    assert "'training.problem.batch_size' must be an integer, got 'many'" in result.stderr
    assert "unknown model 'LeNet'" in result.stderr and "LeNet5" in result.stderr
    result = run_mip("check", tiny_config, "training.problem.name=SerialRecal")
    assert result.returncode == 2 and "SerialRecall" in result.stderr


@pytest.mark.slow
def test_default_configs_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("default_configs: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("default_configs: a.yaml\n")
    result = run_mip("check", tmp_path / "a.yaml")
    assert result.returncode == 2 and "cycle" in result.stderr
    assert f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}" in result.stderr
    (tmp_path / "c.yaml").write_text("default_configs: [missing/x.yaml]\n")
    result = run_mip("check", tmp_path / "c.yaml")
    assert result.returncode == 2 and "missing/x.yaml" in result.stderr and "c.yaml" in result.stderr


def test_model_problem_mismatch_gives_the_handshake_message(tmp_path):
    config = tmp_path / "mismatch.yaml"
    config.write_text("training:\n  problem: {name: SerialRecall, batch_size: 4}\n"
                      "  terminal_conditions: {episode_limit: 2}\nmodel: {name: LeNet5}\n")
    result = run_mip("train", config, "--expdir", tmp_path / "exp")
    assert result.returncode == 2
    assert "model LeNet5 does not fit problem SerialRecall" in result.stderr
    assert "'images'" in result.stderr and "'predictions'" in result.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_sequence_model_on_images_gives_the_handshake_message(tmp_path, blank_mnist):
    result = run_mip("train", CONFIGS / "vision" / "lenet5_mnist.yaml", f"training.problem.data_folder={blank_mnist}",
                     "model.name=LSTM", "model.input_item_size=10", "model.output_item_size=10",
                     "--expdir", tmp_path / "exp")
    assert result.returncode == 2
    assert "model LSTM does not fit problem MNIST" in result.stderr
    assert "'sequences'" in result.stderr and "'predictions'" in result.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_missing_data_files_are_named(tmp_path):
    result = run_mip("train", CONFIGS / "vision" / "lenet5_mnist.yaml", f"training.problem.data_folder={tmp_path}/none",
                     "training.problem.download=false", "--expdir", tmp_path / "exp")  # every split follows
    assert result.returncode == 2
    assert "train-images-idx3-ubyte" in result.stderr and f"{tmp_path}/none" in result.stderr
    assert "download: false" in result.stderr
    assert not (tmp_path / "exp").exists()


def test_the_shipped_mnist_recipe_offline_is_bad_input_naming_the_files_mirrors_and_folder(tmp_path, monkeypatch,
                                                                                           capsys):
    import urllib.error
    import urllib.request

    from miprometheus.cli import main
    from miprometheus.problems.image_to_class import mnist

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # what mnist.fetch calls: no network, on any machine
    folder = tmp_path / "mnist"
    assert main(["train", str(CONFIGS / "vision" / "lenet5_mnist.yaml"), f"training.problem.data_folder={folder}",
                 "--expdir", str(tmp_path / "exp")]) == 2
    error = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in error and "no network" in error
    assert all(mirror in error for mirror in mnist.MIRRORS) and str(folder / "raw") in error
    assert not (tmp_path / "exp").exists() and not list(tmp_path.rglob("*.gz"))


@pytest.mark.slow
def test_corrupt_checkpoint_exit_2_and_nothing_lost(trained, tmp_path):
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(trained, copy)
    best = copy / "models" / "model_best.pt"
    best.write_bytes(best.read_bytes()[:300])
    before = tree_digest(copy)
    result = run_mip("test", copy)
    assert result.returncode == 2 and "corrupt" in result.stderr and "model_best.pt" in result.stderr
    assert tree_digest(copy) == before
    result = run_mip("train", "--resume", copy)  # last checkpoint intact: resume works; now break it
    (copy / "models" / "model_last.pt").write_bytes(b"not a checkpoint")
    before = tree_digest(copy)
    result = run_mip("train", "--resume", copy)
    assert result.returncode == 2 and "model_last.pt" in result.stderr
    assert tree_digest(copy) == before


class _Payload:
    """A pickle that would create a file if it were ever unpickled with code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
def test_foreign_pickle_checkpoint_is_refused_without_running_it(trained, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    import torch

    zipped = tmp_path / "evil_zip.pt"
    torch.save({"model": _Payload(marker)}, zipped)
    assert not marker.exists()
    for checkpoint in (evil, zipped):
        result = run_mip("test", trained / "training_configuration.yaml", "--model", checkpoint)
        assert result.returncode == 2, result.stderr
        assert "not an MI-Prometheus checkpoint" in result.stderr or "corrupt" in result.stderr
        assert not marker.exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    result = run_mip("test", trained / "training_configuration.yaml", "--model", plain)
    assert result.returncode == 2 and "not written by MI-Prometheus" in result.stderr


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(trained):
    result = run_mip("test", trained / "training_configuration.yaml", "model.hidden_size=32",
                     "--model", trained / "models" / "model_best.pt")
    assert result.returncode == 2 and "does not fit model LSTM" in result.stderr


@pytest.mark.slow
def test_test_command_and_legacy_alias(trained):
    result = run_mip("test", trained)
    assert result.returncode == 0, result.stderr
    assert "test folder:" in result.stdout and "acc" in result.stdout
    assert len(list(trained.glob("test_*/testing_set_agg_statistics.csv"))) >= 1
    import subprocess
    import sys

    alias = Path(sys.executable).parent / "mip-tester"
    if not alias.exists():
        pytest.skip("console scripts not installed")
    legacy = subprocess.run([str(alias), "--c", str(trained / "training_configuration.yaml"),
                             "--m", str(trained / "models" / "model_best.pt")], capture_output=True, text=True)
    assert legacy.returncode == 0, legacy.stderr
    assert len(list(trained.glob("test_*/testing_set_agg_statistics.csv"))) >= 2


@pytest.mark.slow
def test_no_cuda_here_is_bad_input(tiny_config, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_mip("train", tiny_config, "--gpu", "--expdir", tmp_path / "exp")
    assert result.returncode == 2 and "CUDA" in result.stderr


@pytest.mark.slow
def test_split_writes_index_files_usable_by_a_sampler(tmp_path, blank_mnist):
    result = run_mip("split", CONFIGS / "vision" / "lenet5_mnist.yaml", "training.sampler.indices=[0, 100]",
                     f"training.problem.data_folder={blank_mnist}", "--fractions", "0.8", "0.2", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    parts = [set(map(int, (tmp_path / f"training_split_{i}.txt").read_text().strip().split(","))) for i in (0, 1)]
    assert len(parts[0]) == 80 and len(parts[1]) == 20 and parts[0] | parts[1] == set(range(100))
    again = tmp_path / "again"
    run_mip("split", CONFIGS / "vision" / "lenet5_mnist.yaml", "training.sampler.indices=[0, 100]",
            f"training.problem.data_folder={blank_mnist}", "--fractions", "0.8", "0.2", "--output", again, check=True)
    assert (again / "training_split_0.txt").read_text() == (tmp_path / "training_split_0.txt").read_text()


# --- CONFIG files and overrides anywhere after the subcommand ----------------------------------------
@pytest.mark.parametrize(("argv", "items", "flags"), [
    (["train", "a.yaml", "--expdir", "X", "k=1"], ["a.yaml", "k=1"], {"expdir": Path("X")}),
    (["train", "a.yaml", "--savetag", "lr=1", "b.yaml", "--gpu", "k=1"], ["a.yaml", "b.yaml", "k=1"],
     {"savetag": "lr=1", "gpu": True}),  # a flag's value may hold '=': it stays the flag's
    (["test", "DIR", "--model", "m.pt", "k=1"], ["k=1"], {"target": "DIR", "model": Path("m.pt")}),
    (["check", "a.yaml", "--quiet", "k=1"], ["a.yaml", "k=1"], {"quiet": True}),
    (["summary", "a.yaml", "--graph", "k=1", "--depth", "2"], ["a.yaml", "k=1"], {"graph": True, "depth": 2}),
    (["train", "a.yaml", "--graph-depth", "3", "k=1"], ["a.yaml", "k=1"], {"graph": False, "graph_depth": 3}),
    (["split", "a.yaml", "--fractions", "0.9", "0.1", "k=1", "--seed", "3", "j=2"], ["a.yaml", "k=1", "j=2"],
     {"fractions": [0.9, 0.1], "seed": 3}),
    (["grid", "train", "g.yaml", "--savetag", "s", "k=1"], ["g.yaml", "k=1"], {"savetag": "s"}),
    (["grid", "run", "g.yaml", "--no-progress", "k=1"], ["g.yaml", "k=1"], {"no_progress": True}),
    # what the legacy mip-grid-trainer-gpu alias builds: its override after the user's flags
    (["grid", "train", "g.yaml", "--savetag", "s", "grid_settings.gpus_per_experiment=1"],
     ["g.yaml", "grid_settings.gpus_per_experiment=1"], {"savetag": "s"}),
])
def test_configs_and_overrides_may_follow_the_flags(argv, items, flags):
    from miprometheus.cli import build_parser, parse_args

    args = parse_args(build_parser(), argv)
    assert args.items == items
    for name, value in flags.items():
        assert getattr(args, name) == value


@pytest.mark.parametrize("argv", [
    ["train", "a.yaml", "--exdir", "X", "k=1"],  # a mistyped flag
    ["check", "a.yaml", "k=1", "--quite"],
    ["grid", "test", "DIR", "k=1"],  # a command that takes no overrides
    ["list", "models", "LSTM", "extra"],
])
def test_a_mistyped_flag_or_a_stray_word_is_still_an_error(argv, capsys):
    from miprometheus.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "unrecognized arguments" in error and f"mip {' '.join(argv[:2] if argv[0] == 'grid' else argv[:1])}" in error


@pytest.mark.slow
def test_train_with_an_override_after_the_flags(tiny_config, tmp_path):
    result = run_mip("train", tiny_config, "--expdir", tmp_path / "exp", "--no-progress",
                     "training.terminal_conditions.episode_limit=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "after 3 episodes" in result.stdout
    result = run_mip("train", tiny_config, "--expdir", tmp_path / "typo", "--exdir", tmp_path / "exp")
    assert result.returncode == 2 and "unrecognized arguments: --exdir" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_split_with_an_override_after_the_fractions(tiny_config, tmp_path, capsys):
    from miprometheus.cli import main

    code = main(["split", str(tiny_config), "--section", "validation", "--fractions", "0.75", "0.25",
                 "validation.problem.size=16", "--output", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    parts = [(tmp_path / "out" / f"validation_split_{i}.txt").read_text().strip().split(",") for i in (0, 1)]
    assert sorted(int(x) for x in parts[0] + parts[1]) == list(range(16)) and len(parts[0]) == 12

"""What the mip commands do: `mip check` refuses exactly what `mip train` refuses, before any folder exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from miprometheus.cli import main


def mip(tmp_path: Path, *args: str) -> int:
    return main([*args, "--expdir", str(tmp_path / "experiments")] if args[0] == "train" else list(args))


def no_experiment_folder(tmp_path: Path) -> bool:
    return not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").rglob("run_info.json"))


@pytest.mark.parametrize("override, message", [
    ("training.terminal_conditions.episode_limit=null", "training needs a limit"),
    ("training.early_stopping.patience=2", "early stopping needs a 'validation' section"),
    ("training.curriculum_learning={initial_max_sequence_length: 9}", "initial_max_sequence_length \\(9\\)"),
    ("validation.num_batches=0", "'validation.num_batches' must be at least 1"),
])
def test_check_refuses_what_train_refuses_before_any_folder(tmp_path, tiny_config, capsys, override, message):
    # before: these passed `mip check` and failed only in `mip train` (the curriculum one after the folder existed)
    text = tiny_config.read_text()
    if "early_stopping" in override:
        text = text.split("validation:")[0] + "testing:" + text.split("testing:")[1]
    tiny_config.write_text(text)
    for command in ("check", "train"):
        assert mip(tmp_path, command, str(tiny_config), override) == 2
        assert re.search(message, capsys.readouterr().err)
    assert no_experiment_folder(tmp_path)

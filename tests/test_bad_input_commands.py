"""Bad input met through the commands themselves: a validation problem the model does not fit (found by
`mip check` and before `mip train` makes a folder), `--threads` out of bounds, a grid file given with
`--resume`, an override too long to name a file, a message that would flood the terminal, and the bounds
`mip list` shows for caps declared in ``params.py``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from miprometheus.cli import MAX_MESSAGE, main


def run_main(capsys, *argv: object) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_mip_check_finds_a_validation_problem_the_trained_model_does_not_fit(tiny_config, capsys):
    code, out = run_main(capsys, "check", tiny_config, "validation.problem.data_bits=4")
    assert code == 2 and "the validation split runs the model" in out and "internal error" not in out


def test_mip_train_refuses_it_before_the_experiment_folder_exists(tiny_config, tmp_path, capsys):
    expdir = tmp_path / "runs"
    code, out = run_main(capsys, "train", tiny_config, "validation.problem.data_bits=4", "--expdir", expdir,
                         "--no-progress")
    assert code == 2 and "internal error" not in out
    assert not list(expdir.rglob("run_info.json"))


@pytest.mark.parametrize("threads", [0, 100_000])
def test_threads_out_of_bounds_is_bad_input(tiny_config, tmp_path, capsys, threads):
    code, out = run_main(capsys, "train", tiny_config, "--threads", threads, "--expdir", tmp_path / "runs")
    assert code == 2 and "--threads must be between 1 and 1024" in out
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("run_info.json"))


def test_a_grid_file_given_with_resume_is_refused_on_the_command_line(tiny_config, tmp_path, capsys):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(f"grid_tasks:\n  - default_configs: {tiny_config}\n"
                         "grid_settings: {max_concurrent_runs: 1}\n")
    code, _ = run_main(capsys, "grid", "train", grid_file, "--expdir", tmp_path / "g", "--no-progress")
    assert code == 0
    [folder] = (tmp_path / "g").iterdir()
    before = folder_digest(folder)
    other = tmp_path / "other.yaml"
    other.write_text(grid_file.read_text())
    code, out = run_main(capsys, "grid", "train", other, "--resume", folder)
    assert code == 2 and "given together" in out
    assert folder_digest(folder) == before


def test_an_override_too_long_to_name_a_file_is_an_override(tiny_config, capsys):
    long_value = "x" * 400  # over the 255 bytes a file name may have: Path.exists() raises, not False
    code, out = run_main(capsys, "check", tiny_config, f"description={long_value}")
    assert code == 0 and "internal error" not in out


def test_a_message_never_floods_the_terminal(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  name: " + "Z" * 200_000 + "\n")
    code, out = run_main(capsys, "check", config)
    assert code == 2 and len(out) < MAX_MESSAGE + 500


def test_caps_declared_in_params_show_as_numbers_in_mip_list(capsys):
    code, out = run_main(capsys, "list", "models", "LSTM")
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith("hidden_size"))
    assert "between 1 and 16384" in line and "MAX_UNITS" not in line

"""Careless and hostile command lines: output places, names of folders, config files whose names hold '=',
a reader that closes the pipe. Each is bad input (exit 2, a message naming the cause), refused before
anything is created, or a quiet end; nothing already written is changed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miprometheus.cli import EXIT_BROKEN_PIPE, main


def run_main(capsys, *argv: object) -> tuple[int, str]:
    """``main`` in this process (the checks come before any heavy import); its exit code and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    return code, capsys.readouterr().err


# --- output places -----------------------------------------------------------------------------------
@pytest.mark.parametrize("below", [False, True])
def test_an_expdir_that_is_a_file_or_below_one_is_bad_input(tmp_path, tiny_config, capsys, below):
    blocker = tmp_path / "results"
    blocker.write_text("my notes\n")
    expdir = blocker / "sub" if below else blocker
    start = time.monotonic()
    code, err = run_main(capsys, "train", tiny_config, "--expdir", expdir)
    assert code == 2 and time.monotonic() - start < 5
    assert f"--expdir {expdir} " + ("lies below the file" if below else "is a file") in err
    assert "internal error" not in err and blocker.read_text() == "my notes\n"


def test_a_read_only_expdir_is_bad_input_before_anything_is_built(tmp_path, tiny_config, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: a chmod 555 folder is writable (the next test covers the code path)")
    expdir = tmp_path / "readonly"
    expdir.mkdir()
    expdir.chmod(0o555)
    try:
        code, err = run_main(capsys, "train", tiny_config, "--expdir", expdir / "exp")
    finally:
        expdir.chmod(0o755)
    assert code == 2 and "which is not writable" in err and list(expdir.iterdir()) == []


def test_a_folder_that_refuses_writes_after_the_check_is_still_bad_input(tmp_path, tiny_config, capsys,
                                                                         monkeypatch):
    """The check passed (a folder made read-only meanwhile, or root on a read-only mount): the OSError met while
    creating the experiment folder is bad input naming --expdir, not an internal error."""
    expdir = tmp_path / "exp"
    real_mkdir = Path.mkdir

    def refusing_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.is_relative_to(expdir):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refusing_mkdir)
    code, err = run_main(capsys, "train", tiny_config, "--expdir", expdir, "--no-progress")
    assert code == 2, err
    assert f"cannot write in --expdir {expdir}: Permission denied" in err and "internal error" not in err


@pytest.mark.parametrize("savetag", ["a/b", "../up", "x" * 300, "tab\there", "é" * 60])
def test_a_savetag_that_is_no_folder_name_is_bad_input(tmp_path, tiny_config, capsys, savetag):
    for command in (["train", tiny_config], ["grid", "train", tmp_path / "grid.yaml"]):
        code, err = run_main(capsys, *command, "--savetag", savetag, "--expdir", tmp_path / "exp")
        assert code == 2 and "argument --savetag: " in err and "a savetag ends a folder name" in err
    assert not (tmp_path / "exp").exists()


def test_a_savetag_may_name_settings():
    from miprometheus.workers.commands import savetag_name

    for text in ("", "lr=0.1,hidden=64", "run-2.b_c+d@e", "é" * 50):
        assert savetag_name(text) == text


def test_split_refuses_a_file_as_output_and_keeps_index_files_unless_forced(tmp_path, tiny_config, capsys):
    args = ["split", tiny_config, "--section", "validation", "--fractions", "0.5", "0.5", "validation.problem.size=8"]
    blocker = tmp_path / "out.txt"
    blocker.write_text("keep\n")
    code, err = run_main(capsys, *args, "--output", blocker)
    assert code == 2 and f"--output {blocker} is a file" in err and blocker.read_text() == "keep\n"

    out = tmp_path / "out"
    out.mkdir()
    (out / "validation_split_1.txt").write_text("0,1\n")
    code, err = run_main(capsys, *args, "--output", out)
    assert code == 2 and "already holds" in err and "validation_split_1.txt" in err and "--force" in err
    assert (out / "validation_split_1.txt").read_text() == "0,1\n" and not (out / "validation_split_0.txt").exists()
    code, err = run_main(capsys, *args, "--output", out, "--force")
    assert code == 0, err
    assert len((out / "validation_split_1.txt").read_text().split(",")) == 4


# --- a reader that closes the pipe --------------------------------------------------------------------
def test_a_closed_pipe_ends_the_command_quietly():
    """`mip list problems | head -1`: the reader goes away; mip stops as a tool ended by SIGPIPE, no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "miprometheus", "list", "problems"],
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before mip writes: its first write meets a closed pipe
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == EXIT_BROKEN_PIPE == 141
    assert err == ""


# --- a CONFIG file or an override ---------------------------------------------------------------------
def test_an_item_naming_an_existing_file_is_a_config_even_with_an_equals_sign(tmp_path, tiny_config, capsys,
                                                                              monkeypatch):
    from miprometheus.cli import is_override

    named = tmp_path / "lr=0.1.yaml"
    named.write_text(tiny_config.read_text())
    monkeypatch.chdir(tmp_path)
    assert not is_override("lr=0.1.yaml") and not is_override(str(named))
    assert is_override("training.optimizer.lr=0.1") and is_override("lr=0.2.yaml")  # no such file: an override
    assert not is_override("configs/lr=0.2.yaml")  # a path: reported as a missing file
    for item in ("lr=0.1.yaml", named):
        code, err = run_main(capsys, "check", item, "--quiet", "training.problem.size=32")
        assert code == 0, err
    code, err = run_main(capsys, "check", "configs/lr=0.2.yaml", "--quiet")
    assert code == 2 and "config file not found" in err and "configs/lr=0.2.yaml" in err


def test_a_relative_data_folder_override_reaches_the_interpolating_splits(tmp_path, capsys, monkeypatch):
    """A copy of a shipped MNIST recipe, whose validation and testing take data_folder by interpolation, with the
    training folder given relative to the working directory: every split reads it there (DESIGN §3)."""
    import shutil

    from tests.conftest import CONFIGS, SHARED_MNIST

    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST t10k files in {SHARED_MNIST}")
    shutil.copytree(CONFIGS / "vision", tmp_path / "configs" / "vision")
    data = tmp_path / "some" / "relative"
    data.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).symlink_to(SHARED_MNIST / name)
    monkeypatch.chdir(tmp_path)
    code, err = run_main(capsys, "check", "configs/vision/lenet5_mnist_t10k.yaml", "--quiet",
                         "training.problem.data_folder=some/relative", "training.problem.download=false")
    assert code == 0, err

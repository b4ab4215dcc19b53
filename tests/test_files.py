"""Files the library writes: atomic, readable like any other file, and read back as written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.config.yaml_loader import dump_yaml, safe_load
from miprometheus.files import atomic_write, atomic_write_json, atomic_write_text
from miprometheus.statistics import CSVWriter


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one\n")
    atomic_write_json(target, {"two": 2})
    assert target.read_text() == '{\n  "two": 2\n}\n'
    assert os.listdir(target.parent) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old\n")

    def fail(handle):
        handle.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_files_have_the_permissions_of_plain_files(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_resumed_csv_is_cut_back_atomically(tmp_path):
    path = tmp_path / "training_statistics.csv"
    path.write_text("episode,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.")  # the last row torn by a kill
    writer = CSVWriter(path, ["episode", "loss"], keep_until_episode=2)
    writer.close()
    assert path.read_text() == "episode,loss\n1,0.5\n2,0.4\n"
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("value", ["1e-4", "yes", ".5", "1_000", "null", "[1]", "12"])
def test_dumped_yaml_reads_back_as_the_same_tree(value):
    tree = {"text": value, "number": 1e-4, "nested": [{"value": value}]}
    assert safe_load(dump_yaml(tree)) == tree


def test_the_saved_config_of_a_run_validates_again(tiny_config: Path, tmp_path):
    """A description that looks like a number stays a string in the effective config."""
    spec = validate(load_config([tiny_config], ["description='1e-4'"]))
    saved = tmp_path / "training_configuration.yaml"
    saved.write_text(dump_yaml(spec.effective_tree()))
    again = validate(load_config([saved]))
    assert again.effective_tree() == spec.effective_tree()
    assert again.config.tree["description"] == "1e-4"

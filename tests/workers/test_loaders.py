"""Problem loaders: a split whose sampler and drop_last give no batch is bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from miprometheus.cli import main
from tests.conftest import SHARED_MNIST


def mip(tmp_path: Path, *args: str) -> int:
    return main([*args, "--expdir", str(tmp_path / "experiments")] if args[0] == "train" else list(args))


def no_experiment_folder(tmp_path: Path) -> bool:
    return not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").rglob("run_info.json"))


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")
@pytest.mark.parametrize("section", ["training", "validation"])
def test_drop_last_with_fewer_samples_than_a_batch_is_bad_input(tmp_path, capsys, section):
    # before: training never ended (zero batches per epoch); an empty validation raised KeyError: 'loss'
    config = tmp_path / "mnist.yaml"
    config.write_text(f"""
training:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 32, download: false}}
  sampler: {{name: SubsetRandomSampler, indices: [0, 320]}}
  terminal_conditions: {{epoch_limit: 1}}
validation:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 50, download: false}}
  sampler: {{name: SubsetSequentialSampler, indices: [9000, 9040]}}
model: {{name: SimpleConvNet}}
""")
    small = (f"{section}.sampler.indices=[0,10]", f"{section}.dataloader.drop_last=true")
    for command in ("check", "train"):
        assert mip(tmp_path, command, str(config), *small) == 2
        assert "fewer than one batch" in capsys.readouterr().err
    assert no_experiment_folder(tmp_path)

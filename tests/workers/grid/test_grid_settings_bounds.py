"""Grid settings that cannot work are refused when the grid file is read, before any grid folder exists."""

from __future__ import annotations

import pytest
import torch

from miprometheus.errors import ConfigError
from miprometheus.workers.grid.spec import load_grid
from tests.conftest import TINY_SERIAL


@pytest.fixture
def grid_file(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    path = tmp_path / "grid.yaml"
    path.write_text("grid_tasks:\n  - default_configs: tiny.yaml\ngrid_settings:\n  max_concurrent_runs: 1\n")
    return path


@pytest.mark.parametrize(("override", "expected"), [
    ("grid_settings.max_concurrent_runs=0", "'grid_settings.max_concurrent_runs' must be at least 1, got 0"),
    ("grid_settings.retries=-1", "'grid_settings.retries' must be between 0 and 100, got -1"),
    ("grid_settings.cpus_per_experiment=-2", "'grid_settings.cpus_per_experiment' must be between 1 and 1024"),
    ("grid_settings.cpus_per_experiment=100000", "'grid_settings.cpus_per_experiment' must be between 1 and 1024"),
    ("grid_settings.gpus_per_experiment=-1", "'grid_settings.gpus_per_experiment' must be between 0 and 64"),
    ("grid_settings.gpus_per_experiment=.nan", "'grid_settings.gpus_per_experiment' must be a finite number"),
    ("grid_settings.seed=1180591620717411303424", "'grid_settings.seed' must be -1 or between 0 and"),
])
def test_a_grid_setting_that_cannot_work_is_refused_with_its_key_and_bound(grid_file, override, expected):
    with pytest.raises(ConfigError) as info:
        load_grid(grid_file, [override])
    assert expected in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_gpus_for_the_local_executor_on_a_machine_without_one_are_refused(grid_file):
    with pytest.raises(ConfigError) as info:
        load_grid(grid_file, ["grid_settings.gpus_per_experiment=1"])
    assert ("'grid_settings.gpus_per_experiment' is 1, and this machine has no GPU (torch.cuda.device_count() is 0)"
            in str(info.value))
    assert load_grid(grid_file, ["grid_settings.gpus_per_experiment=1", "grid_settings.executor=slurm"]).experiments

"""The memory grids fine-tune the DNC's sequence comparison from the serial-recall run of the same repetition."""

from __future__ import annotations

import copy

import pytest

from miprometheus.workers.grid.spec import load_grid, set_dotted
from tests.conftest import CONFIGS


@pytest.mark.parametrize("grid", ["memory_tuned.yaml", "memory_suite.yaml"])
def test_each_comparison_run_starts_from_its_repetitions_serial_recall_run_without_the_output_layer(grid):
    spec = load_grid(CONFIGS / "grids" / grid)
    planned = {e.id: e for e in spec.experiments}
    comparisons = [e for e in spec.experiments if e.task == "sequence_comparison/dnc"]
    assert len(comparisons) == 3
    for experiment in comparisons:
        source = planned[experiment.after]
        assert (source.task, source.repetition) == ("serial_recall/dnc", experiment.repetition)
        assert experiment.after_folder_keys == ["model.init_from.path"]
        # what the runner does when the source has trained: the path changes, strict: false stays
        config = copy.deepcopy(experiment.config)
        set_dotted(config, "model.init_from.path", "../experiments/source")
        assert config["model"]["init_from"] == {"path": "../experiments/source", "strict": False}
        assert config["training"]["problem"]["name"] == "SequenceComparison"

"""The shipped CoGenT protocol grid (train on A, test on A and B, fine-tune on B from A's weights and
vocabulary, test again) runs end to end on a tiny CoGenT set in the official layout, with its features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from miprometheus.problems.vocabulary import Vocabulary
from miprometheus.workers.grid.manifest import Manifest
from tests.clevr_fixtures import TINY_FEATURES, write_clevr_with_features
from tests.conftest import CONFIGS, run_mip

pytestmark = pytest.mark.slow  # a whole grid: train on A, test, fine-tune on B, test

SMALL_MODEL = {"model.dim": 16, "model.max_step": 2, "model.embedding_size": 8}


def test_cogent_protocol_grid_on_fixtures(tmp_path):
    folder, _ = write_clevr_with_features(tmp_path / "CLEVR_CoGenT_v1.0", cogent=True)
    shipped = CONFIGS / "grids" / "cogent_protocol.yaml"
    grid = yaml.safe_load(shipped.read_text())
    common = {"training.problem.data_folder": str(folder), "training.problem.feature_extractor": TINY_FEATURES,
              "training.terminal_conditions.epoch_limit": 1, "validation.interval": 1000, **SMALL_MODEL,
              **{f"{s}.dataloader.num_workers": 0 for s in ("training", "validation", "testing")}}
    for task in grid["grid_tasks"]:  # the shipped tasks, with splits that fit the tiny set (A: 4, valB: 2 questions)
        task["default_configs"] = str((shipped.parent / task["default_configs"]).resolve())
        if "finetune" in task["name"]:
            fits = {"training.sampler.indices": [0, 1], "validation.sampler.indices": [1, 2],
                    "testing.settings.valB.sampler.indices": "1:"}
        else:
            fits = {"training.sampler.indices": [0, 3], "validation.sampler.indices": [3, 4]}
        task["overwrite"] = {**common, **fits}
    grid["grid_settings"].update(gpus_per_experiment=0, max_concurrent_runs=2, cpus_per_experiment=1)
    path = tmp_path / "cogent_protocol.yaml"
    path.write_text(yaml.safe_dump(grid))

    result = run_mip("grid", "run", path, "--expdir", tmp_path / "out", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [grid_folder] = [p.parent for p in (tmp_path / "out").rglob("manifest.json")]
    records = {r.task: r for r in Manifest.load(grid_folder).records}
    assert set(records) == {"mac/train_on_A", "s_mac/train_on_A", "mac/finetune_on_B", "s_mac/finetune_on_B"}
    assert {(r.status, r.test_status) for r in records.values()} == {("done", "done")}
    for model in ("mac", "s_mac"):
        source, finetuned = records[f"{model}/train_on_A"], records[f"{model}/finetune_on_B"]
        assert finetuned.started >= source.ended
        source_dir, finetuned_dir = grid_folder / source.folder, grid_folder / finetuned.folder
        info = json.loads((finetuned_dir / "run_info.json").read_text())
        assert Path(info["init_from"]["checkpoint_file"]) == (source_dir / "models" / "model_best.pt").resolve()
        # the vocabulary of A, carried to B: the same word indices
        assert Vocabulary.load(finetuned_dir / "assets.json", "question_vocabulary") == \
            Vocabulary.load(source_dir / "assets.json", "question_vocabulary")
        config = yaml.safe_load((finetuned_dir / "training_configuration.yaml").read_text())
        assert config["training"]["problem"]["split"] == "valB"
        for experiment in (source_dir, finetuned_dir):  # tested on both conditions
            [test] = sorted(experiment.glob("test_*"))
            assert {p.name for p in test.iterdir() if p.is_dir()} >= {"valA", "valB"}

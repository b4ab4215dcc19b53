"""Every shipped experiment config passes `mip check` (validation and the handshake of every split)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from miprometheus.cli import main
from miprometheus.workers import runs
from tests.conftest import CONFIGS

#: CIFAR configs read the user's data folder; here they read a tiny set in the official format, with splits that fit it.
CIFAR_SPLITS = ["training.sampler.indices=[0,40]", "validation.sampler.indices=[40,50]"]


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory) -> Path:
    import numpy as np

    from miprometheus.problems.image_to_class.cifar_format import write_cifar10

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("cifar10")
    write_cifar10(folder, rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 50),
                  rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 20), archive=True)
    return folder


SHIPPED = sorted(p for p in CONFIGS.glob("*/*.yaml")
                 if p.parent.name != "grids" and not p.name.startswith(("default_", "extract_features_")))


@pytest.fixture(scope="module")
def clevr_overrides(tmp_path_factory) -> list[str]:
    """CLEVR configs read the features in the user's data folder; here a tiny official-layout set with its features."""
    from tests.clevr_fixtures import write_clevr_with_features

    return write_clevr_with_features(tmp_path_factory.mktemp("clevr") / "CLEVR_v1.0")[1]


@pytest.fixture(scope="module")
def cogent_overrides(tmp_path_factory) -> list[str]:
    from tests.clevr_fixtures import write_clevr_with_features

    return write_clevr_with_features(tmp_path_factory.mktemp("cogent") / "CLEVR_CoGenT_v1.0", cogent=True)[1]


def overrides_for(path: Path, request, tmp_path_factory) -> list[str]:
    """What makes a config read small data: a tiny CIFAR or CLEVR set, Sort-of-CLEVR scenes cached in a tmp folder,
    blank MNIST files at the official sizes (the standard splits need the training files, the shared copy has t10k)."""
    if "mnist" in path.name:
        return [f"training.problem.data_folder={request.getfixturevalue('blank_mnist')}"]
    if "cifar" in path.name:
        return [f"training.problem.data_folder={request.getfixturevalue('cifar_folder')}", *CIFAR_SPLITS]
    if "cogent" in path.name and "finetune" in path.name:  # valB holds 2 questions in the fixture
        fits = ["training.sampler.indices=[0, 1]", "validation.sampler.indices=[1, 2]",
                "testing.settings.valB.sampler.indices='1:'"]
        return [o for o in request.getfixturevalue("cogent_overrides") if "sampler" not in o] + fits
    if "cogent" in path.name:
        return request.getfixturevalue("cogent_overrides")
    if "clevr" in path.name and "sort_of_clevr" not in path.name:
        return request.getfixturevalue("clevr_overrides")
    if "sort_of_clevr" in path.name or "shape_color_query" in path.name:
        folder = tmp_path_factory.getbasetemp() / "sort_of_clevr_cache"
        return [f"training.problem.data_folder={folder}", "training.problem.num_scenes=20"]
    return []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mip_check_accepts_every_shipped_config(path: Path, capsys, request, tmp_path_factory):
    overrides = overrides_for(path, request, tmp_path_factory)
    assert main(["check", str(path), *overrides, "--quiet"]) == 0, capsys.readouterr().err
    spec, report, _ = runs.check([str(path)], overrides)
    assert set(spec.splits) == {"training", "validation", "testing"}  # every shipped config has all three
    expected = [n for n in spec.splits if n != "testing" or not spec.test_settings]
    expected += [f"testing.{name}" for name in spec.test_settings]  # named test settings replace the section
    assert [line.split(":")[0] for line in report] == expected


def test_the_values_problems_hand_to_models_use_one_set_of_names(request, tmp_path_factory):
    import dataclasses
    import re

    from miprometheus import registry
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.data import VALUE_NAMES
    from miprometheus.workers.components import build_problem

    design = (CONFIGS.parent / "docs" / "DESIGN.md").read_text()
    table = design.split("### Values problems hand to models")[1].split("\n\n")[2]
    assert re.findall(r"^\| `(\w+)` \|", table, flags=re.M) == list(VALUE_NAMES)
    for name in registry.names("models"):
        model_cls = registry.get("models", name)
        for field in dataclasses.fields(model_cls.Params):
            if field.metadata.get("from_problem"):
                assert field.name in VALUE_NAMES, f"model {name} takes '{field.name}', not a value name"
    from miprometheus.problems.assets import apply_assets, build_training_assets

    for path in SHIPPED:
        spec = validate(load_config([path], overrides_for(path, request, tmp_path_factory)))
        assets = None
        for name, split in spec.splits.items():
            problem = build_problem(split)
            if name == "training":
                assets = build_training_assets(problem)
            apply_assets(problem, assets)
            unknown = set(problem.default_values) - set(VALUE_NAMES)
            assert not unknown, f"{problem.name} publishes {unknown}: add them to VALUE_NAMES and DESIGN §4"


MNIST_RECIPES = [p for p in SHIPPED if p.parent.name == "vision" and "mnist" in p.name]
#: (use_train_data, sampler indices) of training, validation and testing, and the digits a training epoch holds
STANDARD_SPLITS = ({"training": (True, [0, 55000]), "validation": (True, [55000, 60000]),
                    "testing": (False, [0, 10000])}, 55000)
T10K_SPLITS = ({"training": (False, [0, 8000]), "validation": (False, [8000, 9000]),
                "testing": (False, [9000, 10000])}, 8000)


@pytest.mark.parametrize("path", MNIST_RECIPES, ids=lambda p: p.name)
def test_mnist_recipes_read_the_users_data_folder_and_anneal_over_the_whole_run(path: Path):
    import math

    from miprometheus.config import load_config

    loaded = load_config([path])
    splits, epoch_digits = T10K_SPLITS if path.stem.endswith("_t10k") else STANDARD_SPLITS
    folder = loaded.get("training.problem.data_folder")
    # the user's home, expanded when read: never a path relative to the repository (one that leaves it)
    assert isinstance(folder, str) and folder.startswith("~/"), folder
    for section, (use_train_data, indices) in splits.items():
        assert loaded.get(f"{section}.problem.data_folder") == folder, section  # one copy of the digits for all splits
        assert loaded.get(f"{section}.problem.download") is True, section
        assert loaded.get(f"{section}.problem.use_train_data") is use_train_data, section
        assert loaded.get(f"{section}.sampler.indices") == indices, section
    # the cosine schedule reaches 0 at the last episode: T_max is counted in this split's episodes
    episodes = math.ceil(epoch_digits / loaded.get("training.problem.batch_size"))
    assert loaded.get("training.scheduler.T_max") == loaded.get("training.terminal_conditions.epoch_limit") * episodes


def test_every_mnist_recipe_has_its_t10k_variant_and_the_grids_measure_those():
    standard = {p.stem for p in MNIST_RECIPES if not p.stem.endswith("_t10k")}
    variants = {p.stem.removesuffix("_t10k") for p in MNIST_RECIPES if p.stem.endswith("_t10k")}
    assert variants == standard - {"lstm_sequential_pixel_mnist"}  # too slow to measure on a CPU
    for grid in ("vision_suite.yaml", "search_vision.yaml", "vision_tuned.yaml"):
        tasks = yaml.safe_load((CONFIGS / "grids" / grid).read_text())["grid_tasks"]
        assert all(task["default_configs"].endswith("_mnist_t10k.yaml") for task in tasks), grid

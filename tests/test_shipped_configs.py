"""Every shipped experiment config passes `mip check` (validation and the handshake of every split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miprometheus.cli import main
from miprometheus.workers import runs
from tests.conftest import CONFIGS, SHARED_MNIST

#: CIFAR configs read ~/data/cifar10; here they read a tiny set in the official format, with splits that fit it.
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
    """CLEVR configs read ~/data/CLEVR_v1.0's features; here a tiny official-layout set with its features."""
    from tests.clevr_fixtures import write_clevr_with_features

    return write_clevr_with_features(tmp_path_factory.mktemp("clevr") / "CLEVR_v1.0")[1]


@pytest.fixture(scope="module")
def cogent_overrides(tmp_path_factory) -> list[str]:
    from tests.clevr_fixtures import write_clevr_with_features

    return write_clevr_with_features(tmp_path_factory.mktemp("cogent") / "CLEVR_CoGenT_v1.0", cogent=True)[1]


def overrides_for(path: Path, request, tmp_path_factory) -> list[str]:
    """What makes a config read small data: a tiny CIFAR or CLEVR set, Sort-of-CLEVR scenes cached in a tmp folder."""
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
    if "vision" in path.parts and "cifar" not in path.name and not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
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
        if "vision" in path.parts and "cifar" not in path.name and not SHARED_MNIST.is_dir():
            continue
        spec = validate(load_config([path], overrides_for(path, request, tmp_path_factory)))
        assets = None
        for name, split in spec.splits.items():
            problem = build_problem(split)
            if name == "training":
                assets = build_training_assets(problem)
            apply_assets(problem, assets)
            unknown = set(problem.default_values) - set(VALUE_NAMES)
            assert not unknown, f"{problem.name} publishes {unknown}: add them to VALUE_NAMES and DESIGN §4"

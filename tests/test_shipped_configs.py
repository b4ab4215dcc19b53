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


SHIPPED = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "grids" and not p.name.startswith("default_"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mip_check_accepts_every_shipped_config(path: Path, capsys, request):
    overrides = []
    if "cifar" in path.name:
        overrides = [f"training.problem.data_folder={request.getfixturevalue('cifar_folder')}", *CIFAR_SPLITS]
    elif "vision" in path.parts and not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
    assert main(["check", str(path), *overrides, "--quiet"]) == 0, capsys.readouterr().err
    spec, report = runs.check([str(path)], overrides)
    assert set(spec.splits) == {"training", "validation", "testing"}  # every shipped config has all three
    expected = [n for n in spec.splits if n != "testing" or not spec.test_settings]
    expected += [f"testing.{name}" for name in spec.test_settings]  # named test settings replace the section
    assert [line.split(":")[0] for line in report] == expected


def test_the_values_problems_hand_to_models_use_one_set_of_names():
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
    for path in SHIPPED:
        if "cifar" in path.name or ("vision" in path.parts and not SHARED_MNIST.is_dir()):
            continue  # CIFAR configs: checked above on a tiny set
        spec = validate(load_config([path]))
        for split in spec.splits.values():
            problem = build_problem(split)
            unknown = set(problem.default_values) - set(VALUE_NAMES)
            assert not unknown, f"{problem.name} publishes {unknown}: add them to VALUE_NAMES and DESIGN §4"

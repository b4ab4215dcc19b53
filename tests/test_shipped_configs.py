"""Every shipped experiment config passes `mip check` (validation and the handshake of every split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miprometheus.cli import main
from miprometheus.workers import runs
from tests.conftest import CONFIGS, SHARED_MNIST

SHIPPED = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "grids" and not p.name.startswith("default_"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mip_check_accepts_every_shipped_config(path: Path, capsys):
    if "vision" in path.parts and not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
    assert main(["check", str(path), "--quiet"]) == 0, capsys.readouterr().err
    spec, report = runs.check([str(path)], [])
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
        if "vision" in path.parts and not SHARED_MNIST.is_dir():
            continue
        spec = validate(load_config([path]))
        for split in spec.splits.values():
            problem = build_problem(split)
            unknown = set(problem.default_values) - set(VALUE_NAMES)
            assert not unknown, f"{problem.name} publishes {unknown}: add them to VALUE_NAMES and DESIGN §4"

"""Bounds declared on a parameter (``param(min=, max=, also=)``): checked by the schema with file:line, on the
values a problem supplies to a model, on components built in code, and shown by ``mip list``."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from miprometheus import catalogue
from miprometheus.cli import main
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import finalize_model_params, validate
from miprometheus.config.schema import Errors, build, section_values
from miprometheus.errors import ConfigError
from miprometheus.models.memory.ntm import NTM
from miprometheus.params import bound_error, bounds_text, param


@dataclass
class Bounded:
    count: int = param(1, "a count", min=1)
    rate: float = param(0.5, "a probability", min=0, max=1)
    slots: int = param(-1, "-1: as many as steps", min=1, also=(-1,))
    sizes: list[int] = param(factory=lambda: [4], doc="layer sizes", min=1)
    limit: int | None = param(None, "null: no limit", min=0)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def build_section(tmp_path: Path, text: str) -> tuple[Bounded | None, Errors, Path]:
    path = write(tmp_path, "section.yaml", text)
    errors = Errors()
    return build(Bounded, load_config([path]).tree["section"], "section", load_config([path]), errors), errors, path


def test_a_value_out_of_its_declared_bounds_is_refused_with_file_line_key_bound_and_value(tmp_path):
    section, errors, path = build_section(tmp_path, """
        section:
          count: 0
          rate: 1.5
          slots: 0
          sizes: [8, 0]
          limit: -2
        """)
    assert errors == [f"{path.resolve()}:2: 'section.count' must be at least 1, got 0",
                      f"{path.resolve()}:3: 'section.rate' must be between 0 and 1, got 1.5",
                      f"{path.resolve()}:4: 'section.slots' must be -1 or at least 1, got 0",
                      f"{path.resolve()}:5: 'section.sizes' must be each item at least 1, got [8, 0]",
                      f"{path.resolve()}:6: 'section.limit' must be at least 0, got -2"]
    assert section == Bounded()  # each refused key takes its default, so the checks after it still run


def test_values_within_the_bounds_a_sentinel_and_null_are_accepted(tmp_path):
    section, errors, _ = build_section(tmp_path, """
        section: {count: 1, rate: 1, slots: -1, sizes: [1, 2], limit: null}
        """)
    assert errors == [] and section == Bounded(1, 1.0, -1, [1, 2], None)
    assert bounds_text(1, None, (-1,)) == "-1 or at least 1" and bounds_text(None, 6) == "at most 6"
    with pytest.raises(ValueError, match="give min or max"):
        param(0, also=(-1,))


def test_build_returns_the_instance_or_none_and_section_values_checks_without_building(tmp_path):
    @dataclass
    class Needs:
        size: int = param(doc="required", min=1)
        width: int = param(3, "optional", min=1)

    path = write(tmp_path, "needs.yaml", "section: {width: 0}\n")
    config = load_config([path])
    errors = Errors()
    assert build(Needs, config.tree["section"], "section", config, errors) is None
    assert [e.split(": ", 1)[1] for e in errors] == ["'section.width' must be at least 1, got 0",
                                                    "missing required value 'section.size' (required)"]
    errors = Errors()
    # the model's values that the problem supplies may be missing: checked, not built
    assert section_values(Needs, {"width": 2}, "model", config, errors, allow_missing={"size"}) == {"width": 2}
    assert errors == []


EXPERIMENT = """
model:
  name: DWM
  hidden_size: 0
training:
  problem: {name: SerialRecall, batch_size: 4, max_sequence_length: 5}
  terminal_conditions: {episode_limit: -1}
  early_stopping: {patience: 0}
"""


def test_the_schema_refuses_a_model_and_a_section_value_below_its_bound_with_file_and_line(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    with pytest.raises(ConfigError) as info:
        validate(load_config([path]))
    message = str(info.value)
    assert f"{path.resolve()}:3: 'model.hidden_size' must be between 1 and 16384, got 0" in message
    assert f"{path.resolve()}:6: 'training.terminal_conditions.episode_limit' must be at least 1, got -1" in message
    assert "patience" not in message  # 0 is "off", as before


def test_a_value_the_problem_supplies_below_a_bound_is_refused(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace("hidden_size: 0", "hidden_size: 4")
                 .replace("episode_limit: -1", "episode_limit: 10"))
    spec = validate(load_config([path]))
    assert finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8}).input_item_size == 10
    with pytest.raises(ConfigError) as info:
        finalize_model_params(spec, {"input_item_size": 0, "output_item_size": 8})
    assert str(info.value).startswith(f"{path.resolve()}:1: 'model.input_item_size' must be at least 1, got 0, "
                                      "the value the problem supplies")
    with pytest.raises(ConfigError, match=r"'testing.model_overrides.hidden_size' must be between 1 and 16384, got 0"):
        finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8}, {"hidden_size": 0},
                              "testing.model_overrides")


def test_a_component_built_in_code_is_refused_naming_it_and_the_parameter():
    with pytest.raises(ConfigError, match="model NTM: hidden_size must be between 1 and 16384, got 0"):
        NTM(NTM.Params(input_item_size=3, output_item_size=3, hidden_size=0))
    with pytest.raises(ConfigError, match="model NTM: num_addresses must be -1 or at least 1, got 0"):
        NTM(NTM.Params(input_item_size=3, output_item_size=3, num_addresses=0))
    assert NTM(NTM.Params(input_item_size=3, output_item_size=3, num_addresses=-1)).params.num_addresses == -1


def test_mip_list_shows_the_bounds_read_from_the_source(capsys):
    params = {p.name: p for p in catalogue.describe("models", "NTM").params}
    # a cap imported from miprometheus.params reads by its name (MAX_UNITS) until the catalogue resolves imports
    assert params["hidden_size"].bounds.startswith("between 1 and ") and params["hidden_size"].doc.endswith("]")
    assert params["num_addresses"].bounds == "-1 or at least 1"
    assert params["controller"].bounds == ""
    scratch = {p.name: p for p in catalogue.describe("problems", "ScratchPad").params}
    assert scratch["num_subseq_max"].bounds == "at most 127"  # max=MAX_SUBSEQUENCES, the module's constant
    assert scratch["batch_size"].bounds.startswith("between 1 and ")  # inherited from ProblemParams
    assert scratch["bias"].bounds == "between 0 and 1"
    assert main(["list", "models", "NTM"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("num_addresses"))
    assert line.endswith("[-1 or at least 1]")


def test_bound_error_ignores_what_the_type_check_reports():
    field = Bounded.__dataclass_fields__["count"]
    assert bound_error(field, "many") is None and bound_error(field, True) is None and bound_error(field, 2) is None

"""Tests of the configuration system (DESIGN §3): loading, nesting, overrides, provenance and validation."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from miprometheus.config import load_config, parse_overrides
from miprometheus.config.experiment_spec import finalize_model_params, validate
from miprometheus.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(str(p) for p in (REPO / "configs").glob("*/*.yaml")
                 if not p.name.startswith(("default_", "extract_features_"))
                 and p.parent.name != "grids")  # grids, extraction: their own tests


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(paths: list, overrides: list[str] | None = None, *, check: bool = False) -> str:
    """The message of the ConfigError raised by loading (and, with ``check``, validating) a config."""
    with pytest.raises(ConfigError) as info:
        config = load_config(paths, overrides)
        if check:
            validate(config)
    return str(info.value)


# An experiment that validates: every test below breaks one thing of it. Line numbers matter.
EXPERIMENT = """
model:
  name: LSTM
  hidden_size: 16
training:
  problem:
    name: SerialRecall
    batch_size: 4
    max_sequence_length: 5
  optimizer:
    name: Adam
    lr: 0.01
  terminal_conditions:
    episode_limit: 10
  seed: 3
"""

MNIST_EXPERIMENT = """
model:
  name: SimpleConvNet
training:
  problem:
    name: MNIST
    data_folder: data/mnist
    batch_size: 8
  sampler:
    name: SubsetRandomSampler
    indices: [0, 100]
  terminal_conditions:
    epoch_limit: 1
"""


# --- load_config: nesting ---------------------------------------------------------------------------
@pytest.mark.parametrize("listing", ["default_configs: ../shared/base.yaml", "default_configs: [../shared/base.yaml]"])
def test_default_configs_are_relative_to_the_listing_file_not_the_cwd(tmp_path, monkeypatch, listing):
    write(tmp_path, "shared/base.yaml", "a: 1\nb: {c: 2}\n")
    top = write(tmp_path, "exp/top.yaml", f"{listing}\nd: 4\n")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    write(elsewhere, "../shared/base.yaml", "a: wrong file, read relative to the cwd\n")
    monkeypatch.chdir(elsewhere)
    config = load_config([top])
    assert config.tree == {"a": 1, "b": {"c": 2}, "d": 4}
    assert "default_configs" not in config.tree
    assert config.files == [str((tmp_path / "shared/base.yaml").resolve()), str(top.resolve())]


def test_relative_config_path_on_the_command_line_is_relative_to_the_cwd(tmp_path, monkeypatch):
    write(tmp_path, "exp/base.yaml", "a: 1\n")
    write(tmp_path, "exp/top.yaml", "default_configs: base.yaml\nb: 2\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(["exp/top.yaml"]).tree == {"a": 1, "b": 2}


def test_own_values_override_defaults_and_a_later_default_overrides_an_earlier_one(tmp_path):
    write(tmp_path, "one.yaml", "x: 1\ny: 1\nz: 1\nonly_one: true\n")
    write(tmp_path, "two.yaml", "x: 2\ny: 2\n")
    top = write(tmp_path, "top.yaml", "default_configs: [one.yaml, two.yaml]\nx: 3\n")
    assert load_config([top]).tree == {"x": 3, "y": 2, "z": 1, "only_one": True}


def test_nested_defaults_chain(tmp_path):
    write(tmp_path, "a/grand.yaml", "g: grand\nv: grand\n")
    write(tmp_path, "b/parent.yaml", "default_configs: ../a/grand.yaml\nv: parent\np: parent\n")
    top = write(tmp_path, "top.yaml", "default_configs: b/parent.yaml\np: top\n")
    assert load_config([top]).tree == {"g": "grand", "v": "parent", "p": "top"}


def test_several_config_paths_merge_in_order(tmp_path):
    first = write(tmp_path, "first.yaml", "a: 1\nb: 1\nsec: {x: 1, y: 1}\n")
    second = write(tmp_path, "second.yaml", "b: 2\nc: 2\nsec: {y: 2}\n")
    third = write(tmp_path, "third.yaml", "c: 3\n")
    config = load_config([first, second, third])
    assert config.tree == {"a": 1, "b": 2, "c": 3, "sec": {"x": 1, "y": 2}}
    assert load_config([third, second, first]).tree == {"a": 1, "b": 1, "c": 2, "sec": {"x": 1, "y": 1}}
    assert config.files == [str(p.resolve()) for p in (first, second, third)]


def test_dicts_merge_deeply_lists_and_scalars_replace(tmp_path):
    write(tmp_path, "base.yaml", """
        sec:
          deep: {keep: 1, change: 1, inner: {k: 1}}
          lst: [1, 2, 3]
          scalar_to_dict: 5
          dict_to_scalar: {a: 1}
          list_of_maps: [{a: 1}, {b: 2}]
    """)
    top = write(tmp_path, "top.yaml", """
        default_configs: base.yaml
        sec:
          deep: {change: 2, inner: {n: 2}}
          lst: [9]
          scalar_to_dict: {now: dict}
          dict_to_scalar: 7
          list_of_maps: [{c: 3}]
    """)
    assert load_config([top]).tree == {"sec": {
        "deep": {"keep": 1, "change": 2, "inner": {"k": 1, "n": 2}},
        "lst": [9],
        "scalar_to_dict": {"now": "dict"},
        "dict_to_scalar": 7,
        "list_of_maps": [{"c": 3}],
    }}


def test_empty_default_list(tmp_path):
    # an empty file (comments only) is refused saying so: tests/config/test_hostile_yaml.py
    top = write(tmp_path, "top.yaml", "default_configs: []\na: 1\n")
    assert load_config([top]).tree == {"a": 1}


def test_no_config_file_is_an_error():
    with pytest.raises(ConfigError):
        load_config([])


# --- load_config: overrides -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("1e-4", 0.0001), ("1.5e3", 1500.0), ("3", 3), ("-2", -2), (".5", 0.5), ("[1, 2]", [1, 2]),
    ("null", None), ("true", True), ("false", False), ("abc", "abc"), ("'3'", "3"), ("{a: 1}", {"a": 1}),
])
def test_override_values_are_yaml_typed(tmp_path, text, expected):
    path = write(tmp_path, "c.yaml", "training:\n  optimizer:\n    lr: 0.1\n")
    value = load_config([path], [f"training.optimizer.lr={text}"]).tree["training"]["optimizer"]["lr"]
    assert value == expected
    assert type(value) is type(expected)


def test_file_values_read_1e_4_as_a_float(tmp_path):
    path = write(tmp_path, "c.yaml", "a: 1e-4\nb: 1E+3\nc: 1_000\nd: 1.0\n")
    tree = load_config([path]).tree
    assert tree == {"a": 0.0001, "b": 1000.0, "c": 1000, "d": 1.0}
    assert isinstance(tree["a"], float) and isinstance(tree["b"], float) and isinstance(tree["c"], int)


def test_overrides_apply_last_in_order_and_merge_into_sections(tmp_path):
    write(tmp_path, "base.yaml", "sec: {a: 1, b: 1}\n")
    top = write(tmp_path, "top.yaml", "default_configs: base.yaml\nsec: {b: 2}\n")
    config = load_config([top], ["sec.b=3", "sec.b=4", "sec={c: 5}", "sec.eq=x=y"])
    assert config.tree == {"sec": {"a": 1, "b": 4, "c": 5, "eq": "x=y"}}


def test_override_creates_a_new_key_path(tmp_path):
    path = write(tmp_path, "c.yaml", "training:\n  seed: 1\n")
    config = load_config([path], ["training.brand.new.key=7", "model.name=LSTM"])
    assert config.tree == {"training": {"seed": 1, "brand": {"new": {"key": 7}}}, "model": {"name": "LSTM"}}
    assert "training.brand.new.key=7" in str(config.origin("training.brand.new.key"))
    # the sections the override created point at the override too, not at the file
    assert "training.brand.new.key=7" in str(config.origin("training.brand"))
    assert "model.name=LSTM" in config.where("model")


def test_override_into_a_scalar_is_an_error(tmp_path):
    path = write(tmp_path, "c.yaml", "training:\n  seed: 1\n")
    message = error_of([path], ["training.seed.x=1"])
    assert "training.seed.x=1" in message and "'training.seed'" in message


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", ".a=1", "a.=1", " =1"])
def test_malformed_override_is_an_error(tmp_path, bad):
    path = write(tmp_path, "c.yaml", "a: 1\n")
    assert bad in error_of([path], [bad])
    with pytest.raises(ConfigError):
        parse_overrides([bad])


def test_override_with_invalid_yaml_value_is_an_error(tmp_path):
    path = write(tmp_path, "c.yaml", "a: 1\n")
    assert "a=[1" in error_of([path], ["a=[1"])


def test_parse_overrides():
    assert parse_overrides(["a.b=1e-4", "c=[1, 2]", "d=", "e= x "]) == [
        ("a.b", 0.0001, "a.b=1e-4"), ("c", [1, 2], "c=[1, 2]"), ("d", None, "d="), ("e", "x", "e= x ")]


# --- load_config: errors ----------------------------------------------------------------------------
def test_cycle_is_an_error_that_shows_the_chain(tmp_path):
    a = write(tmp_path, "a.yaml", "default_configs: b.yaml\nx: 1\n")
    write(tmp_path, "b.yaml", "default_configs: [a.yaml]\ny: 2\n")
    message = error_of([a])
    assert "cycle" in message
    assert re.search(r"a\.yaml -> .*b\.yaml -> .*a\.yaml", message), message


def test_self_cycle_is_an_error(tmp_path):
    a = write(tmp_path, "a.yaml", "default_configs: a.yaml\n")
    assert "cycle" in error_of([a])


def test_the_same_default_twice_through_two_branches_is_not_a_cycle(tmp_path):
    write(tmp_path, "common.yaml", "c: 1\n")
    write(tmp_path, "left.yaml", "default_configs: common.yaml\nl: 1\n")
    write(tmp_path, "right.yaml", "default_configs: common.yaml\nr: 1\n")
    top = write(tmp_path, "top.yaml", "default_configs: [left.yaml, right.yaml]\n")
    assert load_config([top]).tree == {"c": 1, "l": 1, "r": 1}


def test_missing_default_file_names_it_and_the_file_that_listed_it(tmp_path):
    top = write(tmp_path, "sub/top.yaml", "default_configs: [nothere.yaml]\n")
    message = error_of([top])
    assert str((tmp_path / "sub" / "nothere.yaml").resolve()) in message
    assert str(top.resolve()) in message


def test_missing_config_file_on_the_command_line(tmp_path):
    assert str(tmp_path / "absent.yaml") in error_of([tmp_path / "absent.yaml"])


def test_default_configs_of_a_wrong_type_is_an_error(tmp_path):
    top = write(tmp_path, "top.yaml", "a: 1\ndefault_configs: {x: 1}\n")
    assert f"{top.resolve()}:2" in error_of([top])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "a: 1\nb: 2\nc: [1, 2\nd: 4\n")
    message = error_of([path])
    assert re.search(re.escape(str(path.resolve())) + r":[34]\b", message), message
    path = write(tmp_path, "bad2.yaml", "a: 1\nb:\n  c: 1\n d: 2\n")
    assert re.search(re.escape(str(path.resolve())) + r":4\b", error_of([path])), error_of([path])


def test_syntax_error_in_a_default_file_names_that_file(tmp_path):
    write(tmp_path, "base.yaml", "a: [\n")
    top = write(tmp_path, "top.yaml", "default_configs: base.yaml\n")
    assert str((tmp_path / "base.yaml").resolve()) in error_of([top])


def test_a_key_defined_twice_is_an_error(tmp_path):
    path = write(tmp_path, "dup.yaml", "training:\n  seed: 1\n  log_interval: 5\n  seed: 2\n")
    message = error_of([path])
    assert f"{path.resolve()}:4" in message and "training.seed" in message and "line 2" in message


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = write(tmp_path, "anchors.yaml", """
        base: &base {x: 1, y: 2}
        derived:
          <<: *base
          x: 3
    """)
    config = load_config([path])
    assert config.tree["derived"] == {"x": 3, "y": 2}
    assert config.origin("derived.x").line == 4
    dup = write(tmp_path, "dup.yaml", "base: &b {x: 1}\nd:\n  <<: *b\n  y: 1\n  y: 2\n")
    assert f"{dup.resolve()}:5" in error_of([dup])


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path, "list.yaml", text)
    assert str(path.resolve()) in error_of([path])


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = write(tmp_path, "evil.yaml", "a: !!python/object/apply:os.system ['echo hi']\n")
    assert str(path.resolve()) in error_of([path])


# --- interpolation ----------------------------------------------------------------------------------
def test_interpolation_is_resolved_after_merging_and_overrides(tmp_path):
    write(tmp_path, "base.yaml", """
        training:
          problem:
            batch_size: 8
        validation:
          problem:
            batch_size: ${training.problem.batch_size}
            text: size ${training.problem.batch_size}
    """)
    top = write(tmp_path, "top.yaml", "default_configs: base.yaml\n")
    config = load_config([top])
    assert config.tree["validation"]["problem"] == {"batch_size": 8, "text": "size 8"}
    assert isinstance(config.tree["validation"]["problem"]["batch_size"], int)
    config = load_config([top], ["training.problem.batch_size=32"])
    assert config.tree["validation"]["problem"]["batch_size"] == 32


def test_broken_interpolation_is_an_error_with_file_and_line(tmp_path):
    path = write(tmp_path, "c.yaml", "a: 1\nb:\n  c: ${a.nothere}\n")
    message = error_of([path])
    assert f"{path.resolve()}:3" in message and "b.c" in message


# --- provenance -------------------------------------------------------------------------------------
def test_origins_point_at_file_and_line_after_merging_and_overrides(tmp_path):
    base = write(tmp_path, "defaults/base.yaml", """
        training:
          problem:
            name: SerialRecall
            batch_size: 64
          seed: 1
        lst: [1, 2]
    """)
    top = write(tmp_path, "top.yaml", """
        # a comment
        default_configs: defaults/base.yaml
        training:

          problem:
            batch_size: 8
        lst: [3]
    """)
    config = load_config([top], ["training.seed=5"])
    base, top = base.resolve(), top.resolve()

    def at(key: str) -> tuple[str, int | None]:
        origin = config.origin(key)
        return origin.source, origin.line

    assert at("training.problem.name") == (str(base), 3)
    assert at("training.problem.batch_size") == (str(top), 6)
    assert at("lst") == (str(top), 7)
    assert config.origin("training.problem.name").base_dir == base.parent
    assert config.origin("training.problem.batch_size").base_dir == top.parent
    assert "training.seed=5" in str(config.origin("training.seed"))
    assert config.origin("training.seed").line is None
    assert config.where("training.problem.name") == f"{base}:3: "
    # a key without an origin of its own reports its closest parent
    assert config.origin("training.problem.name.nothere") == config.origin("training.problem.name")
    assert config.get("training.problem.batch_size") == 8
    assert config.get("training.nothere", "dflt") == "dflt"


def test_override_of_a_whole_section_replaces_the_origins_below_it(tmp_path):
    path = write(tmp_path, "c.yaml", "sec:\n  a: 1\n  b: 2\nlst: [1]\n")
    config = load_config([path], ["lst=[2]", "sec=5"])
    assert config.tree == {"sec": 5, "lst": [2]}
    assert "sec=5" in str(config.origin("sec"))
    assert "sec.a" not in config.origins
    assert "lst=[2]" in str(config.origin("lst"))


# --- validate ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_validate(path):
    spec = validate(load_config([path]))
    assert spec.model is not None and "training" in spec.splits
    assert spec.optimizer is not None and spec.optimizer.name in ("Adam", "AdamW", "SGD")
    tree = spec.effective_tree()
    assert tree["model"]["name"] == load_config([path]).tree["model"]["name"]
    loaded = load_config([path])
    for section, split in spec.splits.items():
        folder = getattr(split.problem_params, "data_folder", None)
        if folder is None:
            continue
        assert Path(folder).is_absolute()
        # as the config wrote it: "~" is the user's home, a relative folder is relative to the file that wrote it
        # (configs/vision/default_mnist.yaml's ~/data/mnist), never the cwd
        written = loaded.get(f"{section}.problem.data_folder")
        origin = loaded.origin(f"{section}.problem.data_folder")
        assert written is not None and origin is not None, f"{section}: data_folder {folder} not from the config"
        assert Path(folder) == (origin.base_dir / Path(written).expanduser()).resolve()


def test_shipped_lstm_config_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    spec = validate(load_config([REPO / "configs/algorithmic/lstm_serial_recall_curriculum.yaml"],
                                ["model.hidden_size=32"]))
    training = spec.splits["training"]
    assert training.problem_cls.__name__ == "SerialRecall"
    assert training.problem_params.size == 32000 and training.problem_params.batch_size == 64
    assert spec.training.terminal_conditions.episode_limit == 20000
    assert spec.training.gradient_clipping == 10.0 and isinstance(spec.training.gradient_clipping, float)
    assert spec.curriculum.settings.must_finish is True
    assert spec.curriculum.params.initial_max_sequence_length == 3
    assert spec.model.values["hidden_size"] == 32
    assert spec.optimizer.kwargs == {"lr": 0.005}
    assert spec.scheduler.name == "ReduceLROnPlateau" and spec.scheduler.step_every == "validation"


def test_unknown_key_names_file_line_full_key_and_the_nearest_valid_key(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace("episode_limit: 10", "episodes_limit: 10"))
    message = error_of([path], check=True)
    assert f"{path.resolve()}:13" in message
    assert "training.terminal_conditions.episodes_limit" in message
    assert "did you mean 'training.terminal_conditions.episode_limit'" in message.lower()


def test_unknown_keys_at_every_level(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT + "modle: {}\n")
    message = error_of([path], ["training.problem.data_bit=3", "model.hiden_size=3", "training.seeds=1"],
                       check=True).lower()
    assert f"{path.resolve()}:15".lower() in message and "did you mean 'model'" in message
    assert "did you mean 'training.problem.data_bits'" in message
    assert "did you mean 'model.hidden_size'" in message
    assert "did you mean 'training.seed'" in message


@pytest.mark.parametrize(("old", "new", "line", "key"), [
    ("seed: 3", "seed: abc", 14, "training.seed"),
    ("batch_size: 4", "batch_size: 1.5", 7, "training.problem.batch_size"),
    ("batch_size: 4", "batch_size: true", 7, "training.problem.batch_size"),
    ("hidden_size: 16", "hidden_size: [16]", 3, "model.hidden_size"),
    ("episode_limit: 10", "episode_limit: ten", 13, "training.terminal_conditions.episode_limit"),
])
def test_wrong_type_names_file_line_and_key(tmp_path, old, new, line, key):
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace(old, new))
    message = error_of([path], check=True)
    assert f"{path.resolve()}:{line}: '{key}' must be" in message


def test_ints_are_accepted_where_floats_are_expected(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    spec = validate(load_config([path], ["training.problem.bias=1", "training.gradient_clipping=5"]))
    assert spec.splits["training"].problem_params.bias == 1.0
    assert isinstance(spec.splits["training"].problem_params.bias, float)
    assert isinstance(spec.training.gradient_clipping, float)


def test_missing_required_values_are_named(tmp_path):
    path = write(tmp_path, "exp.yaml", MNIST_EXPERIMENT.replace("    indices: [0, 100]\n", "")
                 .replace("    data_folder: data/mnist\n", ""))
    message = error_of([path], check=True)
    assert "missing required value 'training.sampler.indices'" in message
    assert "missing required value 'training.problem.data_folder'" in message
    assert f"{path.resolve()}:7" in message  # the sampler section
    assert f"{path.resolve()}:4" in message  # the problem section


def test_missing_sections_and_names(tmp_path):
    path = write(tmp_path, "exp.yaml", "training:\n  problem:\n    batch_size: 4\n")
    message = error_of([path], check=True)
    assert "missing 'training.problem.name'" in message
    assert "missing section 'model'" in message


@pytest.mark.parametrize(("override", "wanted"), [
    ("model.name=LeNet", "LeNet5"), ("model.name=lstm", "LSTM"),
    ("training.problem.name=serialrecall", "SerialRecall"), ("training.problem.name=ReverseRecal", "ReverseRecall"),
])
def test_unknown_component_names_list_close_names(tmp_path, override, wanted):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    message = error_of([path], [override], check=True)
    assert f"'{override.split('=')[1]}'" in message
    assert re.search(r"did you mean [^?]*'" + wanted + "'", message, re.I), message


def test_unknown_optimizer_and_optimizer_kwarg(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace("name: Adam", "name: Adamm"))
    message = error_of([path], check=True)
    assert f"{path.resolve()}:10" in message and "'Adamm'" in message and "'Adam'" in message
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace("lr: 0.01", "lrr: 0.01"))
    message = error_of([path], check=True)
    assert f"{path.resolve()}:11" in message and "'training.optimizer.lrr'" in message
    assert "did you mean 'training.optimizer.lr'" in message.lower()


def test_optimizer_and_scheduler_kwargs_are_typed(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    message = error_of([path], ["training.optimizer.lr=fast", "training.optimizer.amsgrad=yes please",
                                "training.scheduler={name: StepLR, step_every: month}"], check=True)
    assert "'training.optimizer.lr' must be a number" in message
    assert "'training.optimizer.amsgrad' must be true or false" in message
    assert "missing required value 'training.scheduler.step_size'" in message
    assert "'training.scheduler.step_every' must be one of" in message
    spec = validate(load_config([path], ["training.optimizer={name: SGD, lr: 1, momentum: 0.9}",
                                         "training.scheduler={name: StepLR, step_size: 2, step_every: episode}"]))
    assert spec.optimizer.kwargs == {"lr": 1.0, "momentum": 0.9} and isinstance(spec.optimizer.kwargs["lr"], float)
    assert spec.scheduler.name == "StepLR" and spec.scheduler.kwargs == {"step_size": 2}
    assert spec.scheduler.step_every == "episode"


def test_all_errors_are_reported_together(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    message = error_of([path], ["training.seed=abc", "training.problem.batch_size=1.5", "model.name=LeNet",
                                "training.optimizer.lrr=1", "validation.problem.name=Nope", "extra=1"], check=True)
    for part in ["training.seed", "training.problem.batch_size", "LeNet5", "training.optimizer.lrr",
                 "'Nope'", "'extra'"]:
        assert part in message
    assert message.count("\n  - ") == 6


def test_path_fields_resolve_relative_to_the_file_that_set_them(tmp_path, monkeypatch):
    write(tmp_path, "defaults/mnist.yaml", MNIST_EXPERIMENT)
    top = write(tmp_path, "exp/top.yaml", "default_configs: ../defaults/mnist.yaml\n")
    monkeypatch.chdir(tmp_path / "exp")
    spec = validate(load_config([top]))
    assert spec.splits["training"].problem_params.data_folder == str(tmp_path.resolve() / "defaults/data/mnist")
    # set by an override: relative to the working directory
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spec = validate(load_config([top], ["training.problem.data_folder=here/mnist"]))
    assert spec.splits["training"].problem_params.data_folder == str(cwd.resolve() / "here/mnist")
    spec = validate(load_config([top], [f"training.problem.data_folder={tmp_path}/abs"]))
    assert spec.splits["training"].problem_params.data_folder == str(tmp_path.resolve() / "abs")


def test_interpolated_path_follows_the_value(tmp_path, monkeypatch):
    path = write(tmp_path, "exp.yaml", MNIST_EXPERIMENT + """
testing:
  problem:
    name: MNIST
    data_folder: ${training.problem.data_folder}
""")
    spec = validate(load_config([path]))
    assert spec.splits["testing"].problem_params.data_folder == str(tmp_path.resolve() / "data/mnist")
    # a relative folder given on the command line is relative to the working directory, in every split that follows it
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spec = validate(load_config([path], ["training.problem.data_folder=here/mnist"]))
    assert {split.problem_params.data_folder for split in spec.splits.values()} == {str(cwd.resolve() / "here/mnist")}


def test_curriculum_learning_on_a_problem_without_curriculum_is_an_error(tmp_path):
    path = write(tmp_path, "exp.yaml", MNIST_EXPERIMENT + "  curriculum_learning:\n    must_finish: true\n")
    message = error_of([path], check=True)
    assert f"{path.resolve()}:13" in message and "MNIST" in message and "curriculum" in message


def test_unknown_curriculum_key(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT + "  curriculum_learning:\n"
                                                    "    initial_max_sequence_lenght: 3\n")
    message = error_of([path], check=True)
    assert f"{path.resolve()}:16" in message
    assert "did you mean 'training.curriculum_learning.initial_max_sequence_length'" in message.lower()
    message = error_of([path], ["training.curriculum_learning={must_finish: 1}"], check=True)
    assert "must_finish" in message and "initial_max_sequence_length" in message


def test_null_sections(tmp_path):
    """An empty section takes its defaults; an optional one set to null is off."""
    path = write(tmp_path, "exp.yaml", EXPERIMENT + "  early_stopping:\n  dataloader:\n  sampler:\n")
    spec = validate(load_config([path], ["training.scheduler=null"]))
    assert spec.training.early_stopping.patience is None and spec.training.early_stopping.min_delta == 0.0
    assert spec.training.dataloader.num_workers == 0
    assert spec.training.sampler is None and spec.scheduler is None
    # null terminal conditions take their defaults: no limit, which training refuses
    assert "training needs a limit" in error_of([path], ["training.terminal_conditions=null"], check=True)


def test_description_must_be_a_string(tmp_path):
    path = write(tmp_path, "exp.yaml", "description: my run\n" + EXPERIMENT)
    assert validate(load_config([path])).effective_tree()["description"] == "my run"
    assert "'description' must be a string" in error_of([path], ["description=[1, 2]"], check=True)


def test_required_sections_can_be_chosen(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT.replace("training:", "testing:")
                 .replace("  optimizer:\n    name: Adam\n    lr: 0.01\n", "")
                 .replace("  terminal_conditions:\n    episode_limit: 10\n", "")
                 .replace("seed: 3", "seed: 7"))
    assert "missing section 'training'" in error_of([path], check=True)
    spec = validate(load_config([path]), required=("testing", "model"))
    assert spec.splits["testing"].section.seed == 7 and spec.optimizer is None


# --- problem -> model values ------------------------------------------------------------------------
def test_finalize_model_params_fills_from_the_problem_and_the_config_wins(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    spec = validate(load_config([path]))
    assert "input_item_size" not in spec.model.values
    params = finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8, "unused": 1})
    assert (params.input_item_size, params.output_item_size, params.hidden_size) == (10, 8, 16)
    assert params.dropout == 0.0
    assert spec.effective_tree(params)["model"] == {"name": "LSTM", "input_item_size": 10, "output_item_size": 8,
                                              "hidden_size": 16, "num_layers": 1, "dropout": 0.0}

    spec = validate(load_config([path], ["model.output_item_size=3"]))
    assert finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8}).output_item_size == 3


def test_the_spec_is_not_changed_after_validation(tmp_path):
    spec = validate(load_config([write(tmp_path, "exp.yaml", EXPERIMENT)]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model = None
    with pytest.raises(TypeError):  # read-only mappings
        spec.model.values["hidden_size"] = 32
    with pytest.raises(TypeError):
        spec.splits["validation"] = spec.splits["training"]
    finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8})  # returned, not stored
    assert "input_item_size" not in spec.effective_tree()["model"] and spec.model.values["hidden_size"] == 16


def test_finalize_model_params_names_what_is_missing(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    spec = validate(load_config([path]))
    with pytest.raises(ConfigError) as info:
        finalize_model_params(spec, {"num_classes": 10})
    message = str(info.value)
    assert "'input_item_size'" in message and "'output_item_size'" in message
    assert "SerialRecall" in message and "num_classes" in message


def test_finalize_model_params_checks_the_problem_values_type(tmp_path):
    path = write(tmp_path, "exp.yaml", EXPERIMENT)
    spec = validate(load_config([path]))
    with pytest.raises(ConfigError, match="model.input_item_size"):
        finalize_model_params(spec, {"input_item_size": "ten", "output_item_size": 8})


# --- the effective configuration --------------------------------------------------------------------
def _round_trip(spec, tmp_path: Path, model_params=None) -> None:
    tree = spec.effective_tree(model_params)
    saved = tmp_path / "saved" / "effective.yaml"
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    again = validate(load_config([saved]))
    assert again.effective_tree() == tree
    return again


@pytest.mark.parametrize("path", SHIPPED)
def test_effective_tree_round_trip_of_shipped_configs(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    _round_trip(validate(load_config([path])), tmp_path)


def test_effective_tree_round_trip_with_everything_set(tmp_path):
    path = write(tmp_path, "exp.yaml", "description: all of it\n" + EXPERIMENT + """
  scheduler: {name: StepLR, step_size: 3, gamma: 0.5, step_every: episode}
  curriculum_learning: {initial_max_sequence_length: 2}
validation:
  problem: {name: ReverseRecall, batch_size: 2}
  interval: 5
""")
    spec = validate(load_config([path], ["training.optimizer.betas=[0.8, 0.9]"]))
    params = finalize_model_params(spec, {"input_item_size": 10, "output_item_size": 8})
    again = _round_trip(spec, tmp_path, params)
    tree = again.effective_tree()
    assert tree["training"]["scheduler"] == {"name": "StepLR", "step_every": "episode", "step_size": 3, "gamma": 0.5}
    assert tree["training"]["curriculum_learning"] == {"must_finish": True, "initial_max_sequence_length": 2}
    assert tree["model"]["input_item_size"] == 10
    assert tree["validation"]["problem"]["name"] == "ReverseRecall"
    assert list(again.optimizer.kwargs["betas"]) == [0.8, 0.9]


def test_sampler_ranges_to_the_end_of_a_dataset(tmp_path):
    """``indices: "a:"`` reaches the end of the dataset (a config need not know its size); "a:b" is [a, b)."""
    from miprometheus.workers.loaders import parse_indices

    assert parse_indices("3:", 6) == [3, 4, 5] and parse_indices("1:4", 6) == [1, 2, 3]
    with pytest.raises(ConfigError, match="out of range"):
        parse_indices("2:9", 6)
    from miprometheus.config.schema import Errors, build
    from miprometheus.config.sections import SamplerSection

    path = write(tmp_path, "exp.yaml", "sampler: {name: SubsetRandomSampler, indices: '5:'}\n")
    config, errors = load_config([path]), Errors()
    sampler = build(SamplerSection, config.tree["sampler"], "sampler", config, errors)
    assert errors == [] and sampler.indices == "5:"  # not taken for a path


def test_generated_validation_and_test_splits_default_to_a_small_size(tmp_path, tiny_config):
    # before: without `size` they validated and tested on the nominal epoch of 1,000,000 samples
    tree = yaml.safe_load(tiny_config.read_text())
    del tree["validation"]["problem"]["size"], tree["testing"]["problem"]["size"]
    tiny_config.write_text(yaml.safe_dump(tree))
    from miprometheus.workers import runs

    spec, report, _ = runs.check([str(tiny_config)], [])
    assert spec.splits["validation"].problem_params.size == 1000
    assert spec.splits["testing"].problem_params.size == 1000
    assert spec.splits["training"].problem_params.size == 320
    assert any(line.startswith("validation") and "1,000 samples" in line for line in report)
    assert spec.effective_tree()["validation"]["problem"]["size"] == 1000  # recorded

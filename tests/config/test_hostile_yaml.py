"""Careless and hostile config files are refused quickly, in bounded memory, naming the file and the limit
(DESIGN §3 "Loading, merging and validation"): ConfigError, which the CLI turns into exit code 2."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from miprometheus.config import load_config, parse_overrides
from miprometheus.config.loader import MAX_DEFAULTS_DEPTH, MAX_FILES
from miprometheus.config.yaml_loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, dump_yaml, safe_load
from miprometheus.errors import ConfigError


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(paths: list, overrides: list[str] | None = None, seconds: float = 2.0) -> str:
    """The message of the ConfigError that loading raises, checked to be one short paragraph, soon."""
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(paths, overrides)
    assert time.monotonic() - start < seconds
    message = str(info.value)
    assert len(message) < 1000, message[:2000]
    return message


def alias_bomb(levels: int, width: int = 10) -> str:
    """A "billion laughs": each level lists the previous one ``width`` times (``width ** levels`` nodes)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# --- 1. documents that expand or nest without bound -------------------------------------------------
def test_an_alias_bomb_is_refused_at_the_alias_limit(tmp_path):
    path = write(tmp_path, "bomb.yaml", alias_bomb(9))  # 10^9 nodes once expanded
    message = refused([path])
    assert f"{path}:5:" in message and f"{MAX_NODES:,} values" in message


def test_aliases_within_the_limit_are_read_and_expanded(tmp_path):
    path = write(tmp_path, "ok.yaml", alias_bomb(3) + "base: &base {a: 1, b: 2}\nmerged: {<<: *base, b: 3}\n"
                                       "again: *base\n")
    tree = load_config([path]).tree
    assert tree["a2"] == [[["lol"] * 10] * 10] * 10
    assert tree["merged"] == {"a": 1, "b": 3} and tree["again"] == {"a": 1, "b": 2}


def test_an_anchored_mapping_with_a_merge_key_may_be_aliased_twice(tmp_path):
    path = write(tmp_path, "ok.yaml", "base: &base {a: 1}\nmid: &mid {<<: *base, a: 2}\nx: *mid\ny: *mid\n")
    assert load_config([path]).tree == {"base": {"a": 1}, "mid": {"a": 2}, "x": {"a": 2}, "y": {"a": 2}}


def test_a_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, "loop.yaml", "a: &a [1, *a]\n")
    assert "recursive" in refused([path])


def test_a_merge_of_many_aliases_is_refused_before_it_is_flattened(tmp_path):
    path = write(tmp_path, "merge.yaml", "m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(100)) + "}\n"
                 "m1: {<<: [" + ", ".join(["*m0"] * 2000) + "]}\n")
    assert "billion laughs" in refused([path])


@pytest.mark.parametrize(("name", "text"), [
    ("lists", "a: " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ("mappings", "a: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"),
    ("block", "".join("  " * i + "a:\n" for i in range(200))),
])
def test_deep_nesting_is_refused_at_the_depth_limit(tmp_path, name, text):
    path = write(tmp_path, f"{name}.yaml", text)
    message = refused([path])
    assert f"{path}:" in message and f"more than {MAX_DEPTH} levels" in message


def test_nesting_through_aliases_counts_the_expanded_depth(tmp_path):
    half = MAX_DEPTH // 2 + 5
    path = write(tmp_path, "deep.yaml", "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * half + "*a"
                 + "]" * half + "\n")
    assert f"more than {MAX_DEPTH} levels" in refused([path])


def test_nesting_within_the_limit_is_read(tmp_path):
    depth = MAX_DEPTH - 2
    path = write(tmp_path, "ok.yaml", "a: " + "[" * depth + "1" + "]" * depth + "\n")
    node = load_config([path]).tree["a"]
    for _ in range(depth):
        node = node[0]
    assert node == 1


def test_a_long_default_configs_chain_is_refused_at_the_depth_limit(tmp_path):
    for i in range(300):
        write(tmp_path, f"c{i}.yaml", f"default_configs: c{i + 1}.yaml\nk{i}: 1\n")
    write(tmp_path, "c300.yaml", "k: 1\n")
    message = refused([tmp_path / "c0.yaml"])
    assert f"more than {MAX_DEFAULTS_DEPTH} files deep" in message and "c0.yaml" in message


def test_default_configs_listed_many_times_are_refused_at_the_file_limit(tmp_path):
    # every level lists the next one 10 times: 10^6 reads without a bound, and no cycle
    for i in range(6):
        write(tmp_path, f"d{i}.yaml", "default_configs: [" + ", ".join([f"d{i + 1}.yaml"] * 10) + "]\n")
    write(tmp_path, "d6.yaml", "k: 1\n")
    assert f"more than {MAX_FILES} files" in refused([tmp_path / "d0.yaml"])


def test_a_chain_within_the_limits_is_read(tmp_path):
    for i in range(MAX_DEFAULTS_DEPTH - 1):
        write(tmp_path, f"c{i}.yaml", f"default_configs: c{i + 1}.yaml\nk{i}: {i}\n")
    write(tmp_path, f"c{MAX_DEFAULTS_DEPTH - 1}.yaml", "k: 1\n")
    assert len(load_config([tmp_path / "c0.yaml"]).tree) == MAX_DEFAULTS_DEPTH


def test_a_large_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as file:  # sparse: 50 MB that take no disk space, and that are never read
        file.truncate(50_000_000)
    message = refused([path])
    assert str(path) in message and f"{MAX_FILE_BYTES:,} bytes" in message


def test_a_value_quoted_in_a_message_is_cut_short(tmp_path):
    long_key = "k" * 1_000  # YAML keys are at most 1024 characters
    path = write(tmp_path, "dup.yaml", f"{long_key}: 1\n{long_key}: 2\n")
    assert "defined twice" in refused([path])
    path = write(tmp_path, "alias.yaml", f"a: *{long_key}\n")
    assert "undefined alias" in refused([path])
    good = write(tmp_path, "good.yaml", "a: 1\n")
    assert "not of the form" in refused([good], ["x" * 500_000])
    assert "is a value, not a section" in refused([good], [f"a.{'b' * 500_000}=1"])
    assert "YAML syntax error" in refused([good], ["a=[" + "x" * 500_000])


def test_an_override_nesting_too_deep_or_expanding_too_far_is_refused(tmp_path):
    good = write(tmp_path, "good.yaml", "a: 1\n")
    assert f"more than {MAX_DEPTH} levels" in refused([good], [".".join(["k"] * 10_000) + "=1"])
    assert f"more than {MAX_DEPTH} levels" in refused([good], ["k=" + "[" * 10_000])
    half = MAX_DEPTH // 2  # the value [[...1...]] has half + 1 levels
    value = "[" * half + "1" + "]" * half
    assert f"more than {MAX_DEPTH} levels" in refused([good], [".".join(["k"] * half) + "=" + value])
    assert load_config([good], [".".join(["k"] * (half - 1)) + "=" + value]).tree["k"]["k"]
    assert "billion laughs" in refused([good], ["k=" + alias_bomb(9).replace("\n", ", ").join("{}")])


def test_a_config_as_deep_as_the_limit_is_resolved_and_validated(tmp_path):
    """OmegaConf resolves interpolations recursively: the depth limit keeps it below Python's recursion limit."""
    from miprometheus.config.experiment_spec import validate

    levels = MAX_DEPTH - 3  # the top mapping, 'model', the levels, the string
    path = write(tmp_path, "deep.yaml", "model:\n  name: LSTM\n  extra: " + "{a: " * levels + "'${model.name}'"
                 + "}" * levels + "\n")
    with pytest.raises(ConfigError, match="unknown key 'model.extra'"):
        validate(load_config([path]))


# --- 2. bytes that are not what they seem -------------------------------------------------------------
@pytest.mark.parametrize(("text", "where", "what"), [
    (b"model:\n  name: LSTM\n  size: 1\x002\n", ":3:10:", "U+0000 (NUL)"),
    (b"model:\n  name: \x1b[31mLSTM\n", ":2:9:", "U+001B"),
    (b"model:\n  name: LSTM\xff\n", ":2:13:", "not UTF-8"),
    ("a: 1\n".encode("utf-16"), ":1:1:", "not UTF-8"),
])
def test_bytes_that_are_not_yaml_text_are_refused_with_their_line(tmp_path, text, where, what):
    path = write(tmp_path, "bytes.yaml", text)
    message = refused([path])
    assert f"{path}{where}" in message and what in message


def test_a_symlink_loop_is_refused(tmp_path):
    os.symlink(tmp_path / "b.yaml", tmp_path / "a.yaml")
    os.symlink(tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert "symlink loop" in refused([tmp_path / "a.yaml"])
    top = write(tmp_path, "top.yaml", "default_configs: a.yaml\n")
    message = refused([top])
    assert "symlink loop" in message and "top.yaml" in message


@pytest.mark.parametrize("text", ["", "---\n", "# only a comment\n\n", "--- # nothing\n...\n"])
def test_an_empty_file_is_refused_saying_it_is_empty(tmp_path, text):
    path = write(tmp_path, "empty.yaml", text)
    message = refused([path])
    assert str(path) in message and "holds no mapping: it is empty" in message


def test_a_file_holding_no_mapping_names_what_it_holds(tmp_path):
    path = write(tmp_path, "list.yaml", "- a\n- b\n")
    assert "not a list (['a', 'b'])" in refused([path])


def test_a_directory_or_a_pipe_is_not_a_config(tmp_path):
    folder = tmp_path / "exp.yaml"
    folder.mkdir()
    assert "is a directory" in refused([folder])
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it would wait for a writer forever
    assert "not a regular file" in refused([tmp_path / "pipe.yaml"])
    assert "not found" in refused([tmp_path / "missing.yaml"])


def test_a_tagged_value_that_cannot_be_read_is_a_config_error(tmp_path):
    path = write(tmp_path, "tag.yaml", "a: !!int x1\nb: !!float abc\n")
    assert f"{path}:1:" in refused([path])


# --- 3. YAML 1.2 numbers and booleans ------------------------------------------------------------------
YAML_1_2 = [
    ("010", 10), ("0o17", 15), ("0x1F", 31), ("-12", -12), ("+5", 5), ("1_000", 1000),
    ("1:30", "1:30"), ("1:30:00", "1:30:00"), ("0b101", "0b101"), ("-0x1F", "-0x1F"), ("2024-01-01", "2024-01-01"),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("Yes", "Yes"), ("OFF", "OFF"), ("y", "y"),
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False),
    ("1e-4", 0.0001), ("1.5", 1.5), ("-.5", -0.5), ("1.", 1.0), ("1.0e+3", 1000.0), ("=", "="), ("~", None),
]


@pytest.mark.parametrize(("text", "expected"), YAML_1_2)
def test_numbers_and_booleans_follow_yaml_1_2_in_files_and_overrides(tmp_path, text, expected):
    path = write(tmp_path, "c.yaml", f"v: {text}\nsection: {{w: [{text}]}}\n")
    tree = load_config([path], [f"o={text}"]).tree
    for value in (tree["v"], tree["section"]["w"][0], tree["o"]):
        assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "expected"), YAML_1_2)
def test_a_dumped_config_reads_back_as_written_by_both_yaml_readers(text, expected):
    tree = {"as_value": expected, "as_string": text, text: "as a key"}
    dumped = dump_yaml(tree)
    assert safe_load(dumped) == tree
    # the grid reads some of its own files with plain PyYAML (YAML 1.1): quoting makes them read the same
    assert yaml.safe_load(dumped) == tree


def test_grid_files_are_read_with_the_same_loader(tmp_path):
    from miprometheus.workers.grid.spec import load_grid

    path = write(tmp_path, "grid.yaml", alias_bomb(9))
    with pytest.raises(ConfigError, match="billion laughs"):
        load_grid(path)


def test_parse_overrides_reads_yaml_1_2():
    assert parse_overrides(["a=010", "b=yes", "c=1:30"]) == [("a", 10, "a=010"), ("b", "yes", "b=yes"),
                                                            ("c", "1:30", "c=1:30")]

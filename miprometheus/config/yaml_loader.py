"""Safe YAML loading that remembers the line of every mapping key (for error messages), and its dump."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from miprometheus.errors import ConfigError

Lines = dict[tuple[str, ...], int]


class SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float (YAML 1.2) rather than a string."""


_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
SafeLoader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def safe_load(text: str) -> Any:
    """Load one YAML value with :class:`SafeLoader`."""
    return yaml.load(text, Loader=SafeLoader)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings :class:`SafeLoader` would read as numbers (``'1e-4'``)."""


_Dumper.yaml_implicit_resolvers = SafeLoader.yaml_implicit_resolvers


def dump_yaml(tree: Any) -> str:
    """YAML text for a config tree, in its key order, that :func:`safe_load` reads back as the same tree."""
    return yaml.dump(tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _build(loader: SafeLoader, node: yaml.Node, path: tuple[str, ...], lines: Lines, source: str) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        # an explicitly tagged collection (!!set, !!python/object/apply:...): the safe constructor
        # builds what is safe and refuses the rest, rather than the tag being silently dropped
        return loader.construct_object(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<) the way the safe loader does
        # flatten_mapping puts the merged pairs first: a later pair wins over a merged one (YAML's
        # merge semantics), but two explicit pairs with the same key are an error.
        first_explicit = len(node.value) - explicit
        result: dict[str, Any] = {}
        seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            line = key_node.start_mark.line + 1
            if index >= first_explicit:
                if key in seen:
                    raise ConfigError(f"{source}:{line}: key '{'.'.join(path + (key,))}' is defined twice "
                                      f"(first on line {lines[path + (key,)]})")
                seen.add(key)
            if key in result:  # a merged value replaced: forget the line numbers below it
                for old in [k for k in lines if k[: len(path) + 1] == path + (key,)]:
                    del lines[old]
            lines[path + (key,)] = line
            result[key] = _build(loader, value_node, path + (key,), lines, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (str(i),), lines, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path) -> tuple[Any, Lines]:
    """Read a YAML file with the safe loader; return its data and the line of each key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return loads_yaml(text, str(path))


def loads_yaml(text: str, source: str) -> tuple[Any, Lines]:
    lines: Lines = {}
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = {} if node is None else _build(loader, node, (), lines, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    return data, lines

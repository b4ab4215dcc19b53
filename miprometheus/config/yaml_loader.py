"""Safe YAML loading that remembers the line of every mapping key (for error messages), and its dump.

Reading is bounded, so that a careless or hostile file is refused quickly, in bounded memory, with the
limit it broke named (DESIGN §3 "Loading, merging and validation"):

- a config file holds at most :data:`MAX_FILE_BYTES` (checked before it is read);
- it is UTF-8 text without control characters (NUL, ...), refused with file:line:column;
- a document holds at most :data:`MAX_NODES` values and nests at most :data:`MAX_DEPTH` deep, each alias (``*a``)
  counted as the values it stands for (a "billion laughs" stops there);
- a value quoted in a message is at most :data:`MAX_SHOWN` characters (:func:`shown`).

Plain scalars are read by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: ``010`` is 10 (not 8),
``1:30`` and ``2024-01-01`` are strings (not 90 and a date), ``yes``/``no``/``on``/``off`` are strings (only
``true``/``false`` in three spellings are booleans), ``0o17`` and ``0x1F`` are ints, ``1e-4`` is a float. One
addition to the core schema: ``_`` between digits groups them (``1_000`` is 1000, as in Python).
"""

from __future__ import annotations

import errno
import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from miprometheus.errors import ConfigError

Lines = dict[tuple[str, ...], int]

#: a config file's size limit: shipped configs are a few KB; a larger file is refused before it is read
MAX_FILE_BYTES = 1_000_000
#: how many levels a document may nest, the top mapping and a leaf value counted (an alias as the levels it stands
#: for); OmegaConf, which resolves interpolations, meets Python's recursion limit a little below 100 levels
MAX_DEPTH = 64
#: how many values (scalars, lists, mappings; keys included) one document may hold, each alias counted as the
#: values of what it names: a "billion laughs" stops here, and so does the time PyYAML takes to read a file
MAX_NODES = 100_000
#: the longest text of a value (or key) that a message quotes
MAX_SHOWN = 200

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, MAX_SHOWN, MAX_SHOWN
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 12


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters, however large the value is."""
    text = _REPR.repr(value)  # bounded in time and memory: reprlib cuts long strings and collections as it goes
    return text if len(text) <= limit else text[:limit] + "..."


def _shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """A text for a message, cut to ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --- YAML 1.2 core schema -------------------------------------------------------------------------
_DIGITS = r"[0-9]+(?:_[0-9]+)*"
_INT = re.compile(rf"^(?:[-+]?{_DIGITS}|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(rf"""^(?:[-+]?(?:\.{_DIGITS}|{_DIGITS}(?:\.(?:{_DIGITS})?)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_MERGE = re.compile(r"^(?:<<)$")
#: characters YAML does not allow in a stream (PyYAML's Reader refuses them without a line number)
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]")


class _LimitError(yaml.MarkedYAMLError):
    """A document breaks one of the reading limits (reported as file:line:column: problem)."""


try:  # libyaml's parser makes the events several times faster; the nodes are composed (and counted) here
    from yaml._yaml import CParser

    _PARSER: tuple[type, ...] = (CParser,)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _PARSER = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)


class SafeLoader(yaml.composer.Composer, *_PARSER, yaml.constructor.SafeConstructor, yaml.resolver.BaseResolver):
    """A safe loader with the YAML 1.2 core schema that composes a document within :data:`MAX_NODES` values and
    :data:`MAX_DEPTH` levels, an alias counted as what it stands for (so a "billion laughs" stops early)."""

    def __init__(self, stream: str) -> None:
        _PARSER[0].__init__(self, stream)  # CParser, or the pure-Python Reader (then Scanner, Parser)
        for part in _PARSER[1:]:
            part.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)
        self._depth = 0  # of the collection being composed
        self._nodes = 0  # composed so far, each alias counted as the size of the node it names
        self._below: list[list[int]] = []  # per open collection: [nodes below it, height below it]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose a node, recording the size and height of each one, so that an alias is charged for what it
        stands for: the document, aliases expanded, stays within :data:`MAX_NODES` and :data:`MAX_DEPTH`."""
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size, height = getattr(node, "mip_size", None), getattr(node, "mip_height", 0)
            if size is None:
                raise _LimitError(None, None, "an alias refers to a collection that contains it (a recursive "
                                              "structure, which a config cannot hold)", mark)
            self._count(size, mark)
            if self._depth + height > MAX_DEPTH:
                raise _LimitError(None, None, f"with its aliases expanded, the document nests more than "
                                              f"{MAX_DEPTH} levels deep (the limit)", mark)
        else:
            if self._depth >= MAX_DEPTH:
                raise _LimitError(None, None, f"mappings and lists nest more than {MAX_DEPTH} levels deep "
                                              "(the limit)", mark)
            self._count(1, mark)
            self._depth += 1
            self._below.append([0, 0])
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
                below = self._below.pop()
            size, height = 1 + below[0], 1 + below[1]
            node.mip_size, node.mip_height = size, height  # type: ignore[union-attr]
        if self._below:
            self._below[-1][0] += size
            self._below[-1][1] = max(self._below[-1][1], height)
        return node

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _LimitError(None, None, f"the document holds more than {MAX_NODES:,} values, counting each alias "
                                          "as the values it stands for (the limit; a \"billion laughs\"?)", mark)


def _construct_int(loader: SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)  # int("010", 10) == 10, not 8


def _construct_float(loader: SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.lstrip("+-") in (".inf", ".nan"):
        return float(text.replace(".", ""))
    return float(text)  # Python's float reads 1e-4, .5, 1_000.5 and refuses 1:30


SafeLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in [
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", _MERGE, "<"),
]:
    SafeLoader.add_implicit_resolver(_tag, _regexp, list(_first))
SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
SafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting every string that :class:`SafeLoader` *or* a YAML 1.1 reader (plain PyYAML,
    which the grid reads its own files with) would take for something else: ``'1e-4'``, ``'010'``, ``'yes'``,
    ``'1:30'``, ``'2024-01-01'``."""


_Dumper.yaml_implicit_resolvers = {
    first: SafeLoader.yaml_implicit_resolvers.get(first, []) + yaml.SafeDumper.yaml_implicit_resolvers.get(first, [])
    for first in {*SafeLoader.yaml_implicit_resolvers, *yaml.SafeDumper.yaml_implicit_resolvers}}


def dump_yaml(tree: Any) -> str:
    """YAML text for a config tree, in its key order, that :func:`safe_load` reads back as the same tree."""
    return yaml.dump(tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


# --- reading ---------------------------------------------------------------------------------------
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(loader: SafeLoader, node: yaml.Node) -> Any:
    """The safe constructor's value of a node; a value its explicit tag refuses (``!!int x``) is a YAML error."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(None, None, f"cannot read the value as {node.tag}: {exc}",
                                                node.start_mark) from None


def _build(loader: SafeLoader, node: yaml.Node, path: tuple[str, ...], lines: Lines, source: str) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        # an explicitly tagged collection (!!set, !!python/object/apply:...): the safe constructor
        # builds what is safe and refuses the rest, rather than the tag being silently dropped
        return _construct(loader, node)
    if isinstance(node, yaml.MappingNode):
        if not hasattr(node, "mip_first_explicit"):  # an aliased mapping is built once per alias, flattened once
            explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
            loader.flatten_mapping(node)  # resolve YAML merge keys (<<) the way the safe loader does
            # flatten_mapping puts the merged pairs first: a later pair wins over a merged one (YAML's
            # merge semantics), but two explicit pairs with the same key are an error.
            node.mip_first_explicit = len(node.value) - explicit
        result: dict[str, Any] = {}
        seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _construct(loader, key_node)
            if not isinstance(key, str):
                key = str(key)
            line = key_node.start_mark.line + 1
            if index >= node.mip_first_explicit:
                if key in seen:
                    raise ConfigError(f"{source}:{line}: key {shown('.'.join(path + (key,)))} is defined twice "
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
    return _construct(loader, node)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a file's bytes; bytes that are not UTF-8 are refused with their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{source}:{line}:{column}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x}: "
                          f"{exc.reason}); a config file is UTF-8 YAML") from None


def read_config_text(path: Path) -> str:
    """The text of a config file, refused (ConfigError) when it cannot be a config: missing, a directory or
    another non-regular file, a symlink loop, larger than :data:`MAX_FILE_BYTES` (checked before reading), or
    not UTF-8 text."""
    try:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            raise ConfigError(f"{path} is a directory, not a config file")
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"{path} is not a regular file (a pipe, a device, ...), so not a config file")
        if status.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: the file holds {status.st_size:,} bytes, more than a config file may "
                              f"({MAX_FILE_BYTES:,} bytes, the limit); is it a config?")
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # bounded even where the size lies (/proc, a growing file)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        why = "a symlink loop (links that point at each other)" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError(f"cannot read config file {shown(str(path))}: {why or exc}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"cannot read config file {shown(str(path))}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: the file holds more than {MAX_FILE_BYTES:,} bytes, more than a config file "
                          "may (the limit); is it a config?")
    return _decode(data, str(path))


def load_yaml(path: Path) -> tuple[Any, Lines]:
    """Read a YAML file with the safe loader; return its data (None for an empty document) and each key's line."""
    return loads_yaml(read_config_text(path), str(path))


def loads_yaml(text: str, source: str) -> tuple[Any, Lines]:
    """Load one YAML document (the limits of this module apply); return its data and the line of each key path.

    An empty document (nothing, comments, a bare ``---``) is None."""
    if bad := _NON_PRINTABLE.search(text):
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        code = ord(bad.group())
        name = {0: " (NUL)", 0x1B: " (ESC)", 0x7F: " (DEL)"}.get(code, "")
        raise ConfigError(f"{source}:{line}:{column}: the control character U+{code:04X}{name} is not allowed in "
                          "YAML (is it a binary file, or not UTF-8?)")
    lines: Lines = {}
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(loader, node, (), lines, source)
    except _LimitError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{source}:{mark.line + 1}:{mark.column + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        if "maximum nesting depth" in what:  # libyaml's own limit (1000), met while it looks ahead for a key
            raise ConfigError(f"{where}: mappings and lists nest more than {MAX_DEPTH} levels deep (the limit)") \
                from None
        raise ConfigError(f"{where}: YAML syntax error: {_shorten(what)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {_shorten(str(exc))}") from None
    finally:
        loader.dispose()
    return data, lines


def depth(value: Any) -> int:
    """How many levels a loaded value nests (a scalar: 1), as :data:`MAX_DEPTH` counts them."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 1


def safe_load(text: str, source: str = "<text>") -> Any:
    """Load one YAML value (an override's, a book's) as a config file's values are read, limits included."""
    return loads_yaml(text, source)[0]

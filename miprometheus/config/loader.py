"""Load a configuration: files with nested ``default_configs``, then ``key=value`` overrides.

Every leaf remembers where it was set (file and line, or the command-line override), so that
validation errors can point at the line to fix and relative paths are read relative to the
file that holds them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.config.yaml_loader import MAX_DEPTH, Lines, depth, load_yaml, safe_load, shown
from miprometheus.errors import ConfigError

DEFAULTS_KEY = "default_configs"


@dataclass(frozen=True)
class Origin:
    """Where a configuration value came from."""

    source: str
    line: int | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class LoadedConfig:
    """A merged configuration tree and the origin of each of its keys (dotted path -> Origin)."""

    tree: dict[str, Any]
    origins: dict[str, Origin]
    files: list[str] = field(default_factory=list)

    def origin(self, dotted: str) -> Origin | None:
        """The origin of a key, or of its closest parent that has one."""
        parts = dotted.split(".")
        while parts:
            found = self.origins.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return None

    def where(self, dotted: str) -> str:
        found = self.origin(dotted)
        return f"{found}: " if found else ""

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.tree
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _file_origins(lines: Lines, path: Path) -> dict[str, Origin]:
    """The origin of every key of a file, from the line of each key path."""
    return {".".join(key_path): Origin(str(path), line, path.parent) for key_path, line in lines.items()}


def deep_merge(base: dict[str, Any], base_origins: dict[str, Origin], update: dict[str, Any],
           update_origins: dict[str, Origin], prefix: str = "") -> None:
    """Deep-merge ``update`` into ``base`` in place: dicts merge, anything else replaces."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if dotted in update_origins:
                base_origins[dotted] = update_origins[dotted]
            deep_merge(base[key], base_origins, value, update_origins, dotted + ".")
            continue
        for old in [k for k in base_origins if k == dotted or k.startswith(dotted + ".")]:
            del base_origins[old]
        base[key] = copy.deepcopy(value)
        for k, o in update_origins.items():
            if k == dotted or k.startswith(dotted + "."):
                base_origins[k] = o


#: how deep ``default_configs`` may nest (a file, its default, that default's default, ...)
MAX_DEFAULTS_DEPTH = 64
#: how many files one load may read in all, counting a file each time a ``default_configs`` lists it
MAX_FILES = 256


def _load_file(path: Path, chain: tuple[Path, ...], reads: list[Path]) -> tuple[dict[str, Any], dict[str, Origin],
                                                                               list[str]]:
    via = f" (listed in default_configs of {' -> '.join(str(p) for p in chain)})" if chain else ""
    if len(chain) > 6:  # a long chain: its two ends say enough
        via = f" (listed in default_configs of {chain[0]} -> ... ({len(chain) - 2} files) -> {chain[-1]})"
    try:
        path = path.resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError("Symlink loop from ...")
        why = "a symlink loop (links that point at each other)" if "loop" in str(exc).lower() else str(exc)
        raise ConfigError(f"cannot read config file {shown(str(path))}: {why}{via}") from None
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        raise ConfigError(f"default_configs form a cycle: {cycle}")
    if len(chain) >= MAX_DEFAULTS_DEPTH:
        raise ConfigError(f"{chain[-1]}: default_configs nest more than {MAX_DEFAULTS_DEPTH} files deep (the limit), "
                          f"from {chain[0]}")
    reads.append(path)
    if len(reads) > MAX_FILES:
        raise ConfigError(f"{chain[-1] if chain else path}: default_configs make this config read more than "
                          f"{MAX_FILES} files (the limit), from {reads[0]}; does a file list the same defaults "
                          "many times?")
    try:
        data, lines = load_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{via}") from None
    if data is None:
        raise ConfigError(f"{path}: the file holds no mapping: it is empty (nothing but blank lines, comments or "
                          f"'---'); a config file holds a mapping of sections{via}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a config file must hold a mapping of sections, not a {type(data).__name__} "
                          f"({shown(data)}){via}")
    origins = _file_origins(lines, path)
    defaults = data.pop(DEFAULTS_KEY, None) or []
    origins.pop(DEFAULTS_KEY, None)
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"{path}:{lines.get((DEFAULTS_KEY,), 1)}: {DEFAULTS_KEY} must be a path or a list of paths")
    for key in [k for k in origins if k.startswith(DEFAULTS_KEY + ".")]:
        del origins[key]
    merged: dict[str, Any] = {}
    merged_origins: dict[str, Origin] = {}
    files: list[str] = []
    for default in defaults:
        sub, sub_origins, sub_files = _load_file(path.parent / Path(default).expanduser(), (*chain, path), reads)
        deep_merge(merged, merged_origins, sub, sub_origins)
        files += sub_files
    deep_merge(merged, merged_origins, data, origins)
    return merged, merged_origins, [*files, str(path)]


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any, str]]:
    """Parse ``key.sub=value`` strings; values are YAML-typed (``1e-4`` is a float, ``[1, 2]`` a list), read as a
    config file's values are (YAML 1.2 numbers and booleans, the same limits)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {shown(item)} is not of the form key.subkey=value")
        if key.count(".") + 1 >= MAX_DEPTH:  # checked first: a key of 10,000 parts would be split for nothing
            raise ConfigError(f"override {shown(item)}: the key nests more than {MAX_DEPTH} levels deep (the limit)")
        value = safe_load(raw, f"override {shown(item)}, value") if raw.strip() else None
        if key.count(".") + 1 + depth(value) > MAX_DEPTH:  # the top mapping, a level per part, the value's levels
            raise ConfigError(f"override {shown(item)}: the key and its value nest more than {MAX_DEPTH} levels deep "
                              "(the limit)")
        parsed.append((key, value, item))
    return parsed


def apply_overrides(config: LoadedConfig, overrides: list[str]) -> None:
    for key, value, text in parse_overrides(overrides):
        origin = Origin(f"command-line override {shown(text)}", None, Path.cwd())
        parts = key.split(".")
        node = config.tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    raise ConfigError(f"override {shown(text)}: {shown('.'.join(parts[:i + 1]))} is a value, "
                                      "not a section")
                child = node[part] = {}
                config.origins[".".join(parts[: i + 1])] = origin  # a section the override creates
            node = child
        update = {parts[-1]: value}
        update_origins = {key: origin}
        if isinstance(value, dict):
            update_origins.update({f"{key}.{k}": origin for k in dotted_keys(value)})
        deep_merge(node, config.origins, update, update_origins, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():  # a YAML key may be a number (``1: x``): named as written, validation reports it
        keys.append(prefix + str(k))
        if isinstance(v, dict):
            keys += dotted_keys(v, prefix + str(k) + ".")
    return keys


#: a value that is one interpolation and nothing else: ``${training.problem.data_folder}``
WHOLE_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def _follow_interpolated_origins(config: LoadedConfig) -> None:
    """A value that is one interpolation is the referenced value: a relative path in it is relative to the file (or
    the working directory of the override) that wrote that value, not to the file holding the interpolation."""
    references = {}
    for key in dotted_keys(config.tree):
        value = config.get(key)
        if isinstance(value, str) and (match := WHOLE_INTERPOLATION.fullmatch(value)):
            references[key] = match.group(1)
    for key, target in references.items():
        seen = {key}
        while target in references and target not in seen:  # a chain of interpolations: follow it to its end
            seen.add(target)
            target = references[target]
        own, source = config.origins.get(key), config.origin(target)
        if own is not None and source is not None:
            config.origins[key] = Origin(own.source, own.line, source.base_dir)


def _resolve_interpolations(config: LoadedConfig) -> None:
    """Resolve OmegaConf interpolations such as ``${training.problem.batch_size}``."""
    if "${" not in repr(config.tree):
        return
    _follow_interpolated_origins(config)
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        config.tree = OmegaConf.to_container(OmegaConf.create(config.tree), resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        raise ConfigError(f"{config.where(str(key))}cannot resolve interpolation at '{key}': {exc.msg}") from None


def load_config(paths: list[str | Path], overrides: list[str] | None = None, resolve: bool = True) -> LoadedConfig:
    """Load and merge config files (later files win), then apply overrides (they win over all).

    Interpolations (``${training.problem.data_folder}``) are resolved last; ``resolve=False`` leaves them for the
    caller to resolve (:func:`resolve_interpolations`) after merging more values in, as a grid's overwrites."""
    if not paths:
        raise ConfigError("no config file given")
    config = LoadedConfig({}, {}, [])
    for p in paths:
        tree, origins, files = _load_file(Path(p).expanduser(), (), [])
        deep_merge(config.tree, config.origins, tree, origins)
        config.files += files
    apply_overrides(config, overrides or [])
    if resolve:
        _resolve_interpolations(config)
    return config


def resolve_interpolations(config: LoadedConfig) -> None:
    """Resolve the interpolations of a config loaded with ``resolve=False``."""
    _resolve_interpolations(config)

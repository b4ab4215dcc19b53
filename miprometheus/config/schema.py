"""Validate configuration sections against typed dataclasses; errors name file:line and a suggestion."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from miprometheus.config.loader import LoadedConfig
from miprometheus.params import bound_error, is_required, param_doc


class Errors(list):
    """Validation errors collected over the whole tree, reported together."""


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a section"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


#: what :func:`coerce` returns for a value that is not of the type
NOT_COERCIBLE = object()


def coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` (ints become floats where floats are expected), or ``NOT_COERCIBLE``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        return None if value is None else NOT_COERCIBLE
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            result = coerce(value, arg)
            if result is not NOT_COERCIBLE:
                return result
        return NOT_COERCIBLE
    if origin is Literal:
        return value if value in typing.get_args(tp) else NOT_COERCIBLE
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return NOT_COERCIBLE
        args = typing.get_args(tp)
        items = [coerce(v, args[0]) if args else v for v in value]
        return NOT_COERCIBLE if any(i is NOT_COERCIBLE for i in items) else list(items)
    if origin is dict:
        return value if isinstance(value, dict) else NOT_COERCIBLE
    if tp is bool:
        return value if isinstance(value, bool) else NOT_COERCIBLE
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else NOT_COERCIBLE
    if tp is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else NOT_COERCIBLE
    if tp is str:
        return value if isinstance(value, str) else NOT_COERCIBLE
    if isinstance(tp, type):
        return value if isinstance(value, tp) else NOT_COERCIBLE
    return value


def suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{close[0]}'?"
    return f" Valid keys: {', '.join(sorted(valid))}." if valid else " This section takes no parameters."


def unknown_key(config: LoadedConfig, full_key: str, valid: list[str]) -> str:
    key = full_key.rsplit(".", 1)[-1]
    prefix = full_key[: -len(key)]
    hint = suggest(key, valid)
    if "Did you mean" in hint:
        hint = f" Did you mean '{prefix}{hint.split(chr(39))[1]}'?"
    return f"{config.where(full_key)}unknown key '{full_key}'.{hint}"


def section_values(cls: type, data: Any, prefix: str, config: LoadedConfig, errors: Errors, *,
                   ignore: tuple[str, ...] = (), allow_missing: set[str] | frozenset[str] = frozenset()
                   ) -> dict[str, Any] | None:
    """The values a config mapping sets for a ``cls`` dataclass, each checked, without making the instance.

    Records in ``errors`` every unknown key, wrong type, value out of its declared bounds (``param(min=,
    max=)``) and missing required value, each with the file:line that set it. ``prefix`` is the dotted key
    of the section; ``ignore`` lists keys handled elsewhere (such as ``name``); ``allow_missing`` lists
    required fields that may be filled later (the model's values that the problem supplies). Returns the
    valid values (a key with an error is left out), or None when ``data`` is not a mapping.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{config.where(prefix)}'{prefix}' must be a section (a mapping), got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key in ignore:
            continue
        if key not in fields:
            errors.append(unknown_key(config, full, list(fields)))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp) or (isinstance(value, dict) and _dataclass_in(tp)):
            if value is None and coerce(None, tp) is not NOT_COERCIBLE:
                values[key] = None  # an optional section switched off
                continue
            # an empty section (``key:`` with nothing below) takes every default
            section = build(_dataclass_in(tp), value, full, config, errors)
            if section is not None:
                values[key] = section
            continue
        result = coerce(value, tp)
        if result is NOT_COERCIBLE:
            errors.append(f"{config.where(full)}'{full}' must be {type_name(tp)}, got {value!r}")
            continue
        why = bound_error(fields[key], result)
        if why:
            errors.append(f"{config.where(full)}'{full}' {why}")
            continue
        if (fields[key].metadata.get("path") and isinstance(result, str) and "," not in result
                and not re.fullmatch(r"\s*\d+\s*:\s*\d*\s*", result)):  # "a:b" sampler ranges are not paths
            result = resolve_path(result, config, full)
        values[key] = result
    for name, f in fields.items():
        if is_required(f) and name not in data and name not in allow_missing:
            full = f"{prefix}.{name}" if prefix else name
            doc = param_doc(f)
            errors.append(f"{config.where(prefix)}missing required value '{full}'" + (f" ({doc})" if doc else ""))
    return values


def build(cls: type, data: Any, prefix: str, config: LoadedConfig, errors: Errors, *,
          ignore: tuple[str, ...] = ()) -> Any | None:
    """Make a ``cls`` dataclass instance from a config mapping, checked as :func:`section_values` does.

    Returns the instance, or None when it cannot be made (a required value missing or wrong: every
    problem is recorded in ``errors``). A key with an error takes its default, so that the checks that
    follow still run and every error of the tree is reported at once.
    """
    values = section_values(cls, data, prefix, config, errors, ignore=ignore)
    if values is None or any(is_required(f) and f.name not in values for f in dataclasses.fields(cls)):
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        errors.append(f"{config.where(prefix)}invalid section '{prefix}': {exc}")
        return None


def _dataclass_in(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def resolve_path(value: str, config: LoadedConfig, full_key: str) -> str:
    """A path from the config, relative to the file that set it (absolute in the saved config)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        origin = config.origin(full_key)
        base = origin.base_dir if origin else Path.cwd()
        path = base / path
    return str(path.resolve())


def as_dict(instance: Any) -> dict[str, Any]:
    """A validated dataclass as a plain dict, ready to be saved as YAML."""
    return dataclasses.asdict(instance)

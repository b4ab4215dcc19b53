"""Typed component parameters: one dataclass per component gives validation, docs and the saved config.

Each problem, model and config section declares its parameters as a dataclass whose fields are
made with :func:`param`, so that every parameter carries a type, a default and a one-line doc.
This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from miprometheus.errors import ConfigError

MISSING = dataclasses.MISSING


def param(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING, path: bool = False,
          from_problem: bool = False, min: float | None = None, max: float | None = None,
          also: tuple[Any, ...] = ()) -> Any:
    """Declare one parameter of a component.

    ``path=True`` marks a file or folder: a relative value is read relative to the config file
    that set it. ``from_problem=True`` marks a model parameter that the problem normally supplies
    (``Problem.default_values``); a value set in the config wins.

    ``min`` and ``max`` bound the value, both inclusive: the schema refuses a config value outside
    them with the file:line that set it, :func:`finalize_model_params` a value the problem supplies, and
    :func:`check_bounds` a component built in code. ``also`` lists sentinel values accepted outside
    the bounds, e.g. ``param(-1, "... -1: N = T", min=1, also=(-1,))``. A null value is never bounded
    (where the type allows null, null has its own meaning: off, no limit). A list's bounds apply to each
    of its items. ``mip list`` shows the bounds beside the doc.
    """
    metadata = {"doc": doc, "path": path, "from_problem": from_problem}
    if min is not None or max is not None:
        metadata.update(min=min, max=max, also=tuple(also))
    elif also:
        raise ValueError("param(also=...) lists values accepted outside min/max: give min or max")
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bounds_text(min: float | None, max: float | None, also: tuple[Any, ...] = ()) -> str:
    """How bounds read in messages and in ``mip list``: "at least 1", "-1 or at least 1", "between 0 and 1"."""
    if min is not None and max is not None:
        text = f"between {min} and {max}"
    elif min is not None:
        text = f"at least {min}"
    elif max is not None:
        text = f"at most {max}"
    else:
        return ""
    return " or ".join([*(repr(value) for value in also), text])


def bound_error(field: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` breaks the bounds declared on ``field`` ("must be at least 1, got 0"), or None."""
    metadata = field.metadata or {}
    low, high = metadata.get("min"), metadata.get("max")
    if (low is None and high is None) or value is None:
        return None
    for item in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            continue  # not a number: the type check reports it
        if item in metadata.get("also", ()):
            continue
        if (low is not None and item < low) or (high is not None and item > high):
            each = "each item " if isinstance(value, (list, tuple)) else ""
            return f"must be {each}{bounds_text(low, high, metadata.get('also', ()))}, got {value!r}"
    return None


def check_bounds(params: Any, who: str) -> None:
    """Refuse a component's parameters that break their declared bounds (a component built in code, not
    from a config); ``who`` names the component ("model SAN")."""
    if not dataclasses.is_dataclass(params):
        return
    for f in dataclasses.fields(params):
        why = bound_error(f, getattr(params, f.name))
        if why:
            raise ConfigError(f"{who}: {f.name} {why}")


def param_doc(field: dataclasses.Field) -> str:
    return field.metadata.get("doc", "") if field.metadata else ""


def is_required(field: dataclasses.Field) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


@dataclasses.dataclass
class NoParams:
    """A component without parameters."""

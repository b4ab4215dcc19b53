"""Typed component parameters: one dataclass per component gives validation, docs and the saved config.

Each problem, model and config section declares its parameters as a dataclass whose fields are
made with :func:`param`, so that every parameter carries a type, a default and a one-line doc.
This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from miprometheus.errors import ConfigError

MISSING = dataclasses.MISSING

# Caps of sizes: a value above one could never fit in memory (or would take days per batch), so it is refused
# when the config is read, not by an allocator minutes later. Declared on the parameters (``max=MAX_UNITS``).
#: most samples in one batch
MAX_BATCH_SIZE = 65_536
#: most units of one layer (hidden, embedding, memory word and controller sizes): an LSTM of 16,384 units holds
#: 2 billion weights
MAX_UNITS = 16_384
#: most items (steps, tokens) of one sequence
MAX_SEQUENCE_LENGTH = 65_536
#: most pixels on one side of an image a problem makes (resizes to)
MAX_IMAGE_SIDE = 4_096
#: most CPU threads of one run (``--threads``, ``grid_settings.cpus_per_experiment``): torch.set_num_threads far
#: above the cores crashes some builds (a segmentation fault at 100,000)
MAX_THREADS = 1_024
#: largest seed: torch.manual_seed takes 64-bit seeds; 2**63 - 1 keeps them signed integers everywhere
MAX_SEED = 2**63 - 1


def param(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING, path: bool = False,
          from_problem: bool = False, min: float | None = None, max: float | None = None,
          also: tuple[Any, ...] = (), finite: bool = True) -> Any:
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

    A float value must be finite (NaN and infinities are refused, bounds or not) unless ``finite=False``:
    a NaN compares false with every bound, so it would pass them all.
    """
    metadata = {"doc": doc, "path": path, "from_problem": from_problem, "finite": finite}
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
    """Why ``value`` breaks the bounds declared on ``field`` ("must be at least 1, got 0"; "must be a finite
    number, got nan"), or None."""
    metadata = field.metadata or {}
    low, high = metadata.get("min"), metadata.get("max")
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else (value,)
    if metadata.get("finite", True) and any(not_finite(item) for item in items):
        each = "each item " if isinstance(value, (list, tuple)) else ""
        return f"must be {each}a finite number, got {value!r}"
    if low is None and high is None:
        return None
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            continue  # not a number: the type check reports it
        if item in metadata.get("also", ()):
            continue
        if (low is not None and item < low) or (high is not None and item > high):
            each = "each item " if isinstance(value, (list, tuple)) else ""
            return f"must be {each}{bounds_text(low, high, metadata.get('also', ()))}, got {value!r}"
    return None


def not_finite(value: Any) -> bool:
    """True for a float NaN or infinity (YAML's ``.nan``, ``.inf``, or ``1e400``)."""
    return isinstance(value, float) and not math.isfinite(value)


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

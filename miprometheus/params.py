"""Typed component parameters: one dataclass per component gives validation, docs and the saved config.

Each problem, model and config section declares its parameters as a dataclass whose fields are
made with :func:`param`, so that every parameter carries a type, a default and a one-line doc.
This module does not import torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

MISSING = dataclasses.MISSING


def param(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING, path: bool = False,
          from_problem: bool = False) -> Any:
    """Declare one parameter of a component.

    ``path=True`` marks a file or folder: a relative value is read relative to the config file
    that set it. ``from_problem=True`` marks a model parameter that the problem normally supplies
    (``Problem.default_values``); a value set in the config wins.
    """
    metadata = {"doc": doc, "path": path, "from_problem": from_problem}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def param_doc(field: dataclasses.Field) -> str:
    return field.metadata.get("doc", "") if field.metadata else ""


def is_required(field: dataclasses.Field) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


@dataclasses.dataclass
class NoParams:
    """A component without parameters."""

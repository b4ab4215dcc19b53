"""``grid_settings.search``: the search space, budget, sampler, objective, pruner and re-evaluation of a grid.

Checked before anything runs (DESIGN §7): every space entry is a range or a list of choices, every
key is one the task's configuration knows, the objective is a statistic its validation produces, and
``reevaluate.top`` fits in the budget; each error names the grid file's line.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from miprometheus.config.loader import LoadedConfig, Origin, deep_merge, dotted_keys
from miprometheus.config.schema import Errors, build
from miprometheus.params import param

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")
PRUNERS = ("asha", "median", "hyperband", "none")
SPACE_ENTRY_KEYS = ("low", "high", "log", "step", "choices")


@dataclass
class SearchObjective:
    """What the search optimises: a statistic of the validation split, and its direction."""

    statistic: str = param("loss", "a validation statistic (a column of validation_statistics.csv)")
    direction: Literal["minimize", "maximize"] = param("minimize", "minimize or maximize")


@dataclass
class Reevaluation:
    """The best configurations of each task, re-trained on seeds the search never used, then tested."""

    top: int = param(1, "how many of each task's best trials are re-evaluated", min=1)
    seeds: int = param(5, "fresh seeds per re-evaluated configuration (0: no re-evaluation)", min=0)


@dataclass
class SearchSettings:
    """A hyper-parameter search run by the grid process (one Optuna study per task, equal budgets)."""

    space: dict[str, Any] = param(factory=dict, doc="dotted config key -> {low, high[, log][, step]} or "
                                                    "{choices: [...]}; integers when both bounds are integers")
    trials: int = param(20, "trials per task: every task gets the same budget", min=1)
    sampler: Literal["tpe", "random", "gp", "cmaes", "grid"] = param("tpe", "tpe, random, gp, cmaes or grid")
    objective: SearchObjective = param(factory=SearchObjective, doc="the validation statistic and its direction")
    pruner: Literal["asha", "median", "hyperband", "none"] = param("asha", "asha, median, hyperband or none: "
                                                                          "stops unpromising trials early")
    reevaluate: Reevaluation = param(factory=Reevaluation, doc="the best configurations on fresh seeds, tested")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        """The settings as a grid folder's ``grid_configuration.yaml`` stores them (already checked)."""
        return cls(space=dict(data.get("space") or {}), trials=int(data.get("trials", 20)),
                   sampler=data.get("sampler", "tpe"), pruner=data.get("pruner", "asha"),
                   objective=SearchObjective(**(data.get("objective") or {})),
                   reevaluate=Reevaluation(**(data.get("reevaluate") or {})))


# ------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or integer range (``log``, ``step``) or a list of choices."""

    key: str
    kind: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    def examples(self) -> list[Any]:
        """Values a trial may get, enough to check the key against a task's schema: the bounds or each choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def grid_values(self) -> list[Any] | None:
        """The values the grid sampler walks through; None for a continuous range (it cannot)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is not None and not self.log:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [self.low + i * self.step for i in range(count)]
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_dimension(key: str, entry: Any, where: str) -> tuple[Dimension | None, list[str]]:
    """One space entry as a Dimension, or the errors that stop it (each starting with ``where``, its file:line)."""
    if not isinstance(entry, dict):
        return None, [f"{where}search space '{key}' must be a mapping {{low, high[, log][, step]}} or "
                      f"{{choices: [...]}}, got {entry!r}"]
    unknown = [k for k in entry if k not in SPACE_ENTRY_KEYS]
    if unknown:
        return None, [f"{where}search space '{key}': unknown entr{'y' if len(unknown) == 1 else 'ies'} "
                      f"{', '.join(map(str, unknown))} (known: {', '.join(SPACE_ENTRY_KEYS)})"]
    if "choices" in entry:
        choices = entry["choices"]
        others = [k for k in entry if k != "choices"]
        if others:
            return None, [f"{where}search space '{key}': choices cannot be combined with {', '.join(others)}"]
        if not isinstance(choices, list) or not choices:
            return None, [f"{where}search space '{key}': choices must be a non-empty list, got {choices!r}"]
        bad = [c for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
        if bad:
            return None, [f"{where}search space '{key}': a choice must be a number, a string, true/false or null, "
                          f"got {bad[0]!r}"]
        if len({repr(c) for c in choices}) != len(choices):
            return None, [f"{where}search space '{key}': choices repeat a value: {choices!r}"]
        return Dimension(key, "categorical", choices=tuple(choices)), []
    low, high = entry.get("low"), entry.get("high")
    log, step = entry.get("log", False), entry.get("step")
    if "low" not in entry or "high" not in entry:
        return None, [f"{where}search space '{key}' needs both low and high (or choices)"]
    if not _is_number(low) or not _is_number(high):
        return None, [f"{where}search space '{key}': low and high must be numbers, got {low!r} and {high!r}"]
    if not low < high:
        return None, [f"{where}search space '{key}': low ({low}) must be below high ({high}): not a range"]
    if not isinstance(log, bool):
        return None, [f"{where}search space '{key}': log must be true or false, got {log!r}"]
    if log and low <= 0:
        return None, [f"{where}search space '{key}': log needs positive bounds, got low {low}"]
    integer = _is_int(low) and _is_int(high)
    if step is not None:
        if not _is_number(step) or step <= 0 or (integer and not _is_int(step)):
            return None, [f"{where}search space '{key}': step must be a positive "
                          f"{'integer' if integer else 'number'}, got {step!r}"]
        if log and not (integer and step == 1):
            return None, [f"{where}search space '{key}': step cannot be combined with log"]
    return Dimension(key, "int" if integer else "float", low, high, log, step), []


def parse_space(space: dict[str, Any], where: Any) -> tuple[dict[str, Dimension], list[str]]:
    """Every entry of a space; ``where(key)`` gives an entry's ``file:line: ``."""
    dimensions: dict[str, Dimension] = {}
    errors: list[str] = []
    for key, entry in space.items():
        if not isinstance(key, str) or not key:
            errors.append(f"{where(key)}search space keys must be dotted config keys, got {key!r}")
            continue
        dimension, problems = parse_dimension(key, entry, where(key))
        errors += problems
        if dimension is not None:
            dimensions[key] = dimension
    return dimensions, errors


def build_settings(raw: Any, prefix: str, grid: LoadedConfig, errors: Errors) -> SearchSettings | None:
    """``grid_settings.search`` checked as a section (unknown keys, types, bounds with file:line)."""
    return build(SearchSettings, raw, prefix, grid, errors)


def task_space(settings: SearchSettings, task_space_raw: dict[str, Any]) -> dict[str, Any]:
    """The raw space of one task: the grid's, with the task's ``search_space`` entries added or replacing."""
    merged = dict(settings.space)
    merged.update(task_space_raw or {})
    return merged


def with_values(loaded: LoadedConfig, values: dict[str, Any], origins: dict[str, Origin]) -> LoadedConfig:
    """A copy of a task's loaded config with dotted ``values`` set (each remembering where it was written)."""
    tree = copy.deepcopy(loaded.tree)
    result = LoadedConfig(tree, dict(loaded.origins), list(getattr(loaded, "files", [])))
    nested: dict[str, Any] = {}
    for key, value in values.items():
        piece: dict[str, Any] = {}
        node = piece
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
        deep_merge(nested, {}, piece, {})
    deep_merge(result.tree, result.origins, nested, {k: origins[k] for k in dotted_keys(nested) if k in origins})
    return result

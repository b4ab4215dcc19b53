"""Statistics: per-episode rows, exact aggregation over a whole split, CSV export (DESIGN §8).

A problem declares its statistics once (:class:`StatisticDefinition`: how each one combines over
batches) and returns, per batch, a value for each of them. A ``mean`` statistic is returned as a
:class:`Measure` (a total and the count it is a mean over: correct bits and scored bits, correct
answers and questions of one type), or as a float, which counts as a mean over the batch's samples.
A statistic may be absent from a batch (a question type that the batch does not hold), and a
Measure with count 0 is absent too. The aggregate of a split is then exact: the sum of the totals
over the sum of the counts, equal to the figure computed on all the samples at once. A figure that is
no mean over items (corpus BLEU) is a ``counts`` statistic: each batch returns :class:`Counts`, its
sufficient statistics (matched and total n-grams, lengths), summed over the split and then finalised.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from miprometheus.files import atomic_write_text

#: bookkeeping columns that are not statistics
CONTEXT_COLUMNS = ("episode", "epoch")
COMBINES = ("mean", "sum", "max", "min", "counts")


@dataclass(frozen=True)
class StatisticDefinition:
    """How one statistic combines over the batches of a split: a weighted mean, a sum, a max, a min, or
    ``counts`` (:class:`Counts` summed element-wise, then finalised)."""

    combine: Literal["mean", "sum", "max", "min", "counts"] = "mean"
    description: str = ""

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"a statistic combines by one of {', '.join(COMBINES)}, not {self.combine!r}")


class Measure(NamedTuple):
    """One batch's contribution to a mean: ``total`` over ``count`` items (its value is their ratio)."""

    total: float
    count: float

    @property
    def value(self) -> float:
        total, count = float(self.total), float(self.count)
        return total / count if count else math.nan


@dataclass(frozen=True)
class Counts:
    """One batch's sufficient statistics of a figure that is no mean over items (corpus BLEU): summed
    element-wise over the batches of a split, then turned into the figure by ``finalize``; exact over the split."""

    counts: tuple[float, ...]
    finalize: Callable[[Sequence[float]], float]

    @property
    def value(self) -> float:
        return float(self.finalize(self.counts))


def mean_of(total: Any, count: Any) -> Measure:
    """A mean statistic of one batch from a total and its count (tensors or numbers).

    Tensors stay tensors, detached and on their device: reading them back is a host-device sync, which the
    Trainer does once per block of episodes (``workers/step.py``), not once per statistic and step.
    """
    return Measure(_kept(total), _kept(count))


def _kept(number: Any) -> Any:
    return number.detach() if hasattr(number, "detach") else float(number)


def batch_value(value: float | Measure | Counts) -> float:
    """The value of a statistic in one batch's row."""
    return value.value if isinstance(value, (Measure, Counts)) else float(value)


class Aggregator:
    """Exact aggregates of a split's per-batch statistics, in the columns its problem declared.

    For every statistic ``s`` (and ``loss``): ``s`` combined as declared, and ``s_min``, ``s_max``,
    ``s_std`` (population standard deviation) of its per-batch values, over the batches it was
    present in; ``samples_aggregated`` (the number of samples) and ``episodes_aggregated`` (batches).
    A statistic present in no batch is NaN.
    """

    def __init__(self, definitions: Mapping[str, StatisticDefinition]) -> None:
        self.definitions = {"loss": StatisticDefinition("mean", "the problem's loss"), **definitions}
        self._combined: dict[str, list[float]] = {}  # name -> [total, count] (mean), the summed counts, or [value]
        self._finalize: dict[str, Callable[[Sequence[float]], float]] = {}  # counts statistics
        self._values: dict[str, list[float]] = {name: [] for name in self.definitions}
        self.samples = 0
        self.batches = 0

    def add(self, samples: int, loss: Measure, statistics: Mapping[str, float | Measure]) -> None:
        """Add one batch of ``samples`` samples: its loss (a Measure) and its statistics."""
        self.samples += int(samples)
        self.batches += 1
        for name, value in {"loss": loss, **statistics}.items():
            definition = self.definitions.get(name)
            if definition is None:
                raise KeyError(f"statistic '{name}' is not declared in the problem's statistic_definitions "
                               f"(declared: {', '.join(self.definitions)})")
            if definition.combine == "mean":
                measure = (Measure(float(value.total), float(value.count)) if isinstance(value, Measure)
                           else Measure(float(value) * samples, float(samples)))
                if not measure.count:
                    continue  # absent from this batch (an empty group)
                total = self._combined.setdefault(name, [0.0, 0.0])
                total[0] += measure.total
                total[1] += measure.count
                self._values[name].append(measure.value)
                continue
            if definition.combine == "counts":
                if not isinstance(value, Counts):
                    raise TypeError(f"statistic '{name}' combines by counts: a batch returns Counts, not {value!r}")
                summed = self._combined.setdefault(name, [0.0] * len(value.counts))
                if len(summed) != len(value.counts):
                    raise ValueError(f"statistic '{name}': {len(value.counts)} counts in a batch, {len(summed)} before")
                for i, number in enumerate(value.counts):
                    summed[i] += float(number)
                self._finalize[name] = value.finalize
                self._values[name].append(value.value)
                continue
            number = float(value)
            self._values[name].append(number)
            if name not in self._combined:
                self._combined[name] = [number]
            elif definition.combine == "sum":
                self._combined[name][0] += number
            elif definition.combine == "max":
                self._combined[name][0] = max(self._combined[name][0], number)
            else:
                self._combined[name][0] = min(self._combined[name][0], number)

    def columns(self) -> list[str]:
        names = []
        for name in self.definitions:
            names += [name, f"{name}_min", f"{name}_max", f"{name}_std"]
        return names + ["samples_aggregated", "episodes_aggregated"]

    def result(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for name, definition in self.definitions.items():
            values = self._values[name]
            combined = self._combined.get(name)
            if combined is None:
                result.update({name: math.nan, f"{name}_min": math.nan, f"{name}_max": math.nan,
                               f"{name}_std": math.nan})
                continue
            if definition.combine == "mean":
                result[name] = combined[0] / combined[1]
            elif definition.combine == "counts":
                result[name] = float(self._finalize[name](combined))
            else:
                result[name] = combined[0]
            average = sum(values) / len(values)
            result[f"{name}_min"] = min(values)
            result[f"{name}_max"] = max(values)
            result[f"{name}_std"] = math.sqrt(sum((v - average) ** 2 for v in values) / len(values))
        result["samples_aggregated"] = float(self.samples)
        result["episodes_aggregated"] = float(self.batches)
        return result


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class CSVWriter:
    """A CSV file written one row at a time, flushed after every row so a kill leaves it well-formed.

    Its columns are the declared ``columns`` (a row may leave some empty: a statistic absent from a
    batch); a key that is not a column is an error, never silently dropped. With
    ``keep_until_episode``, an existing file is kept up to that episode (rows after it, and any torn
    last line, are dropped): that is how a resumed run continues the statistics of the run it resumes.
    """

    def __init__(self, path: Path, columns: list[str], keep_until_episode: int | None = None) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self._handle: io.TextIOWrapper | None = None
        if keep_until_episode is not None and self.path.exists():
            self._truncate(keep_until_episode)

    def _truncate(self, episode: int) -> None:
        with open(self.path, newline="") as handle:
            lines = handle.read().splitlines(keepends=True)
        if not lines:
            return
        header = next(csv.reader([lines[0]]))
        kept = [lines[0]]
        for line in lines[1:]:
            if not line.endswith("\n"):
                break  # torn by a kill
            row = next(csv.reader([line]))
            if len(row) != len(header):
                break
            record = dict(zip(header, row))
            if "episode" in record and int(float(record["episode"])) > episode:
                break
            kept.append(line)
        atomic_write_text(self.path, "".join(kept))
        self.columns = header

    def write(self, row: dict[str, Any], flush: bool = True) -> None:
        if self._handle is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            self._handle = open(self.path, "a", newline="")  # kept open for the run
            if not exists:
                self._handle.write(",".join(self.columns) + "\n")
        unknown = [key for key in row if key not in self.columns]
        if unknown:
            raise KeyError(f"{self.path.name}: {', '.join(unknown)} not among the declared columns")
        self._handle.write(",".join(_format(row.get(c, "")) for c in self.columns) + "\n")
        if flush:
            self._handle.flush()

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Several rows, flushed once after the last: a kill leaves whole rows (a torn last line is dropped
        when the file is kept by ``keep_until_episode``)."""
        for row in rows:
            self.write(row, flush=False)
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole CSV file atomically."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = [",".join(columns)] + [",".join(_format(r.get(c, "")) for c in columns) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))

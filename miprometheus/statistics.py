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

import contextlib
import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from miprometheus.files import atomic_write_text, write_failure

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
    """A CSV file written in whole rows, flushed after every row (or block) so a kill leaves it well-formed.

    Its columns are the declared ``columns`` (a row may leave some empty: a statistic absent from a
    batch); a key that is not a column is an error, never silently dropped. Rows go to the file in one
    ``write`` per block; one that fails (a full disk, a file-size limit) is cut off again, so the file
    never holds a torn row, and the error is a ``files.WriteFailed`` naming the file. With
    ``keep_until_episode``, an existing file is kept up to that episode (rows after it, and a torn last
    line left by a kill, are dropped): that is how a resumed run continues the statistics of the run it
    resumes. A damaged row before that (not numbers, a wrong number of cells) is bad input
    (:func:`check_statistics_csv`), found before anything is written.
    """

    def __init__(self, path: Path, columns: list[str], keep_until_episode: int | None = None) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self._handle: io.FileIO | None = None
        if keep_until_episode is not None and self.path.exists():
            self._truncate(keep_until_episode)

    def _truncate(self, episode: int) -> None:
        header, rows = _statistics_rows(self.path)
        if header is None:
            if self.path.stat().st_size:
                atomic_write_text(self.path, "")  # a header torn by a kill: written again
            return
        kept = [line for line, record in rows if "episode" not in record or int(float(record["episode"])) <= episode]
        text = ",".join(header) + "\n" + "".join(kept)
        if text.encode() != self.path.read_bytes():
            atomic_write_text(self.path, text)
        self.columns = header

    def write(self, row: dict[str, Any], flush: bool = True) -> None:
        self.write_rows([row])

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Several rows in one write: a kill or a failed write leaves whole rows only."""
        lines = []
        for row in rows:
            unknown = [key for key in row if key not in self.columns]
            if unknown:
                raise KeyError(f"{self.path.name}: {', '.join(unknown)} not among the declared columns")
            lines.append(",".join(_format(row.get(c, "")) for c in self.columns) + "\n")
        if self._handle is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            self._handle = open(self.path, "ab", buffering=0)  # kept open for the run; unbuffered: whole writes
            if not exists:
                lines.insert(0, ",".join(self.columns) + "\n")
        if lines:
            self._append("".join(lines).encode())

    def _append(self, data: bytes) -> None:
        handle = self._handle
        start = os.fstat(handle.fileno()).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[handle.write(view):]
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(handle.fileno(), start)  # no torn row
            failed = write_failure(error, self.path)
            if failed is not None:
                raise failed from None
            raise

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _statistics_rows(path: Path) -> tuple[list[str] | None, list[tuple[str, dict[str, str]]]]:
    """The header and the (line, record) of every whole row of a statistics CSV; a torn last line (no
    newline: a kill in a write) is left out. A row that is not numbers in the header's columns is bad input."""
    from miprometheus.errors import BadInputError

    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is damaged: it is not text (a statistics CSV file)") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # torn by a kill: repaired by dropping it
    if not lines:
        return None, []
    header = next(csv.reader([lines[0]]))
    if not header or any(not name for name in header):
        raise BadInputError(f"{path} is damaged: its first line is not a header of column names")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = next(csv.reader([line]), [])
        bad = len(cells) != len(header)
        if not bad:
            try:
                [float(cell) for cell in cells if cell != ""]
            except ValueError:
                bad = True
        if bad:
            raise BadInputError(
                f"{path} is damaged at line {number}: {line.strip()[:80]!r} is not a row of {len(header)} numbers "
                f"({', '.join(header[:4])}, ...). Fix or remove that line (the rows after it are kept), or "
                "delete the file to lose the statistics before the checkpoint; nothing was written.")
        rows.append((line, dict(zip(header, cells))))
    return header, rows


def check_statistics_csv(path: Path) -> None:
    """Raise BadInputError naming ``path`` and the line when a statistics CSV is damaged (a missing file is fine)."""
    if Path(path).exists():
        _statistics_rows(Path(path))


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

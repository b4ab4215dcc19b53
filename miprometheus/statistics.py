"""Statistics: per-episode rows, aggregation over a set (mean/min/max/std), CSV export (DESIGN §8)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: per-batch statistics that are not averaged but summed when aggregating
COUNT_STATISTICS = ("batch_size",)
#: bookkeeping columns that are not statistics
CONTEXT_COLUMNS = ("episode", "epoch")


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Aggregate per-batch statistics over a set: ``s`` (mean), ``s_min``, ``s_max``, ``s_std``.

    ``s_std`` is the population standard deviation (0 for a single batch); ``samples_aggregated``
    sums ``batch_size``; ``episodes_aggregated`` counts the batches.
    """
    result: dict[str, float] = {}
    if not rows:
        return result
    keys = [k for k in rows[0] if k not in CONTEXT_COLUMNS]
    for key in keys:
        values = [float(r[key]) for r in rows if key in r]
        if key in COUNT_STATISTICS:
            result["samples_aggregated"] = sum(values)
            continue
        mean = sum(values) / len(values)
        result[key] = mean
        result[f"{key}_min"] = min(values)
        result[f"{key}_max"] = max(values)
        result[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    result["episodes_aggregated"] = len(rows)
    return result


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class CSVWriter:
    """A CSV file written one row at a time, flushed after every row so a kill leaves it well-formed.

    Columns are fixed by the first row. With ``keep_until_episode``, an existing file is kept up to
    that episode (rows after it, and any torn last line, are dropped): that is how a resumed run
    continues the statistics of the run it resumes.
    """

    def __init__(self, path: Path, keep_until_episode: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
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
        tmp = self.path.with_suffix(".csv.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)
        self.columns = header

    def write(self, row: dict[str, Any]) -> None:
        if self._handle is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            self._handle = open(self.path, "a", newline="")  # noqa: SIM115 - kept open for the run
            if exists and self.columns is None:
                with open(self.path, newline="") as handle:
                    self.columns = next(csv.reader(handle))
            if self.columns is None:
                self.columns = list(row)
            if not exists:
                self._handle.write(",".join(self.columns) + "\n")
        self._handle.write(",".join(_format(row.get(c, "")) for c in self.columns) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole CSV file atomically."""
    from miprometheus.files import atomic_write_text

    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = [",".join(columns)] + [",".join(_format(r.get(c, "")) for c in columns) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))

"""The drift check: short fixed-seed runs of shipped configs, compared with the figures the book stores.

Each run of the book's ``check.runs`` is ``mip train CONFIG OVERRIDES --test`` in its own process (one thread,
a fixed seed among the overrides), in a temporary folder; its figures (``val_loss``, ``test_acc``, ... as
:func:`miprometheus.load` names them) are compared with ``<data>/check/values.csv`` within each figure's
tolerance (stated in the book file: runs on other CPUs round differently). A run whose environment variable is
unset (the MNIST digits' folder) is skipped and said so. ``--update`` stores the new figures instead: a change
that moves a figure on purpose commits them with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.book.spec import Book, BookError, CheckRun, expand

VALUES_CSV, META_JSON = "values.csv", "meta.json"


@dataclass
class Outcome:
    run: CheckRun
    figures: dict[str, float | None] = field(default_factory=dict)  # statistic -> the new value
    skipped: str | None = None  # why the run did not happen
    error: str | None = None  # the run failed: its last lines
    seconds: float = 0.0


@dataclass
class Drift:
    run: str
    statistic: str
    stored: float | None
    new: float | None
    tolerance: float

    def message(self) -> str:
        stored = "none stored" if self.stored is None else f"stored {self.stored:.6g}"
        new = "not measured" if self.new is None else f"now {self.new:.6g}"
        difference = "" if self.stored is None or self.new is None else f", off by {abs(self.new - self.stored):.3g}"
        return f"{self.run} {self.statistic}: {stored}, {new}{difference} (tolerance {self.tolerance:.3g})"


def read_values(book: Book) -> tuple[dict[tuple[str, str], float], dict[str, Any]]:
    """The stored figures ``{(run, statistic): value}`` and how they were measured."""
    folder = book.check_data
    values: dict[tuple[str, str], float] = {}
    path = folder / VALUES_CSV
    if path.is_file():
        for row in csv.DictReader(io.StringIO(path.read_text())):
            try:
                values[(row["run"], row["statistic"])] = float(row["value"])
            except (KeyError, TypeError, ValueError):
                raise BookError(f"{path}: a row is not 'run,statistic,value' with a number: {row}") from None
    meta_path = folder / META_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return values, meta


def _command(book: Book, run: CheckRun, folder: Path) -> list[str]:
    where = f"the drift check's run {run.name}"
    config = expand(run.config, where)
    overrides = [expand(o, where) for o in run.overrides]
    return [sys.executable, "-m", "miprometheus", "train", str(book.root / config), *overrides, "--test",
            "--expdir", str(folder), "--no-progress", "--threads", str(book.check_threads)]


def _figures(folder: Path, run: CheckRun) -> dict[str, float | None]:
    from miprometheus.workers.grid.analysis import load

    frame = load(folder)
    figures: dict[str, float | None] = {}
    for statistic in run.tolerances:
        value = frame[statistic].iloc[0] if statistic in frame.columns and len(frame) else None
        figures[statistic] = None if value is None or value != value else float(value)
    return figures


def run_slice(book: Book, only: list[str] | None = None, log: Any = print) -> list[Outcome]:
    """Run the check's runs (``book.check_parallel`` at a time) and read their figures."""
    runs = [r for r in book.check if not only or r.name in only]
    unknown = sorted(set(only or []) - {r.name for r in book.check})
    if unknown:
        raise BookError(f"the drift check has no run {unknown[0]!r}; its runs: {', '.join(r.name for r in book.check)}")
    outcomes = {r.name: Outcome(r) for r in runs}
    waiting = []
    for run in runs:
        missing = [name for name in run.requires if not os.environ.get(name)]
        if missing:
            outcomes[run.name].skipped = f"{missing[0]} is not set"
        else:
            waiting.append(run)
    with tempfile.TemporaryDirectory(prefix="mip-book-check-") as scratch:
        active: list[tuple[CheckRun, subprocess.Popen[bytes], Path, float, Any]] = []
        while waiting or active:
            while waiting and len(active) < max(1, book.check_parallel):
                run = waiting.pop(0)
                folder = Path(scratch) / run.name
                out = open(Path(scratch) / f"{run.name}.log", "wb")  # noqa: SIM115 (closed when it ends)
                process = subprocess.Popen(_command(book, run, folder), cwd=book.root, stdout=out,
                                           stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
                active.append((run, process, folder, time.monotonic(), out))
                log(f"started {run.name}: {run.config} {' '.join(run.overrides)}")
            time.sleep(0.2)
            for item in list(active):
                run, process, folder, start, out = item
                if process.poll() is None:
                    continue
                active.remove(item)
                out.close()
                outcome = outcomes[run.name]
                outcome.seconds = time.monotonic() - start
                if process.returncode != 0:
                    lines = (Path(scratch) / f"{run.name}.log").read_text(errors="replace").splitlines()
                    outcome.error = f"exit {process.returncode}: " + " | ".join(lines[-4:])
                else:
                    outcome.figures = _figures(folder, run)
                log(f"ended {run.name} in {outcome.seconds:.0f} s" + (f" ({outcome.error})" if outcome.error else ""))
    return [outcomes[r.name] for r in runs]


def compare(book: Book, outcomes: list[Outcome]) -> list[Drift]:
    """The figures outside their tolerance (a missing stored or new value counts as drift)."""
    values, _ = read_values(book)
    drifts = []
    for outcome in outcomes:
        if outcome.skipped or outcome.error:
            continue
        for statistic, tolerance in outcome.run.tolerances.items():
            stored, new = values.get((outcome.run.name, statistic)), outcome.figures.get(statistic)
            if stored is None or new is None or abs(new - stored) > tolerance + 1e-12:
                drifts.append(Drift(outcome.run.name, statistic, stored, new, tolerance))
    return drifts


def store(book: Book, outcomes: list[Outcome]) -> Path:
    """Write the new figures (runs not measured now keep theirs) and this machine's description."""
    from miprometheus import __version__
    from miprometheus.book.store import machine
    from miprometheus.files import atomic_write_text

    values, _ = read_values(book)
    for outcome in outcomes:
        for statistic, value in outcome.figures.items():
            if value is not None:
                values[(outcome.run.name, statistic)] = value
    order = [(r.name, s) for r in book.check for s in r.tolerances]
    lines = ["run,statistic,value"] + [f"{run},{statistic},{values[(run, statistic)]:.6g}"
                                       for run, statistic in order if (run, statistic) in values]
    folder = book.check_data
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / VALUES_CSV, "\n".join(lines) + "\n")
    import torch

    meta = {"machine": machine(), "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                                               "miprometheus": __version__},
            "commit": _commit(book.root), "threads": book.check_threads}
    atomic_write_text(folder / META_JSON, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return folder / VALUES_CSV


def _commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


__all__ = ["Drift", "Outcome", "compare", "read_values", "run_slice", "store"]

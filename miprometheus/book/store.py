"""An entry's committed result files: what a grid folder leaves, made compact (a few to a hundred KB).

``<data>/<entry>/`` holds

* ``experiments.csv``: one row per experiment, as :func:`miprometheus.load` reads the grid (task, phase, seed,
  status, the parameters that vary, every ``val_*`` / ``test*`` statistic, episodes, wall time, why it
  stopped), numbers rounded to 6 significant digits; bookkeeping (folders, errors) left out;
* ``curves.csv``: each experiment's validation statistics against the episode (the entry's ``curves``, and
  ``loss``), at most :data:`MAX_POINTS` rows per experiment (evenly spaced, the last one kept);
* ``search_summary.csv``: the grid's search table, when it searched;
* ``meta.json``: the grid file and its overrides, when it ran (first start, last end, wall time), the machine
  (CPU model and cores, threads per experiment and experiments at once, device), the Python, torch and
  MI-Prometheus versions and the git commit the experiments ran from;
* ``figures/``: the learning curves drawn from ``curves.csv`` (PNG), embedded by the chapters.

Files are written atomically and only once the whole entry is read: a grid that cannot be read leaves the
committed results as they were.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from miprometheus.book.spec import Book, BookError, Entry
from miprometheus.files import atomic_write_text
from miprometheus.layout import SEARCH_SUMMARY_CSV

MAX_POINTS = 120
EXPERIMENTS_CSV, CURVES_CSV, META_JSON = "experiments.csv", "curves.csv", "meta.json"
SEARCH_CSV = SEARCH_SUMMARY_CSV  # the grid's own search table, kept under its name
FIGURES = "figures"
#: columns of ``load()`` that are bookkeeping, not results
_DROPPED = {"folder", "last_error", "attempts", "test_status", "id"}


def rounded(value: Any) -> Any:
    """6 significant digits for floats (a stable, compact CSV); anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict[str, Any]:
    """This machine, as the book states where a figure was measured."""
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except Exception:  # torch without a working CUDA: no GPU to name
        gpu = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "system": platform.system()}


def experiment_folders(grid_dir: Path, frame: Any) -> list[str | None]:
    """Each row's experiment folder relative to the grid; a running experiment's (which ``load`` leaves empty until
    the manifest records it) is the newest folder holding a run_info.json under ``experiments/<id>/``."""
    from miprometheus.layout import GRID_EXPERIMENTS_DIR, RUN_INFO

    folders: list[str | None] = []
    for identifier, folder in zip(frame["id"], frame.get("folder", [None] * len(frame))):
        if not (isinstance(folder, str) and folder):
            found = sorted((grid_dir / GRID_EXPERIMENTS_DIR / str(identifier)).glob(f"**/{RUN_INFO}"),
                           key=lambda path: path.parent.name)
            folder = found[-1].parent.relative_to(grid_dir).as_posix() if found else None
        folders.append(folder)
    return folders


def _run_infos(grid_dir: Path, frame: Any) -> list[dict[str, Any]]:
    from miprometheus.layout import RUN_INFO, VALIDATION_CSV
    from miprometheus.workers.grid.analysis.collect import read_json

    infos = []
    for folder in experiment_folders(grid_dir, frame):
        if folder:
            info = read_json(grid_dir / folder / RUN_INFO)
            if info and not info.get("end_time") and (grid_dir / folder / VALIDATION_CSV).is_file():
                # still running: its end so far is its last validation
                last = (grid_dir / folder / VALIDATION_CSV).stat().st_mtime
                info = {**info, "end_time": datetime.fromtimestamp(last, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")}
            if info:
                infos.append(info)
    return infos


def _when(infos: list[dict[str, Any]]) -> dict[str, Any]:
    def parse(text: Any) -> datetime | None:
        try:
            return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None

    starts = [t for t in (parse(i.get("start_time")) for i in infos) if t]
    ends = [t for t in (parse(i.get("end_time")) for i in infos) if t]
    if not starts or not ends:
        return {"started": None, "ended": None, "wall_time_s": None}
    first, last = min(starts), max(ends)
    return {"started": first.isoformat(), "ended": last.isoformat(),
            "wall_time_s": round((last - first).total_seconds())}


def grid_meta(grid_dir: Path, entry: Entry, frame: Any) -> dict[str, Any]:
    """meta.json: what ran, when, on which machine and code (from the experiments' run_info.json)."""
    from miprometheus.layout import grid_config_file
    from miprometheus.workers.grid.analysis.collect import read_yaml

    infos = _run_infos(grid_dir, frame)
    first = infos[0] if infos else {}
    settings = (read_yaml(grid_config_file(grid_dir)) or {}).get("grid_settings") or {}
    commits = sorted({str((i.get("git") or {}).get("package", {}).get("commit")) for i in infos} - {"None"})
    dirty = any((i.get("git") or {}).get("package", {}).get("dirty") for i in infos)
    devices = sorted({str(i.get("device")) for i in infos if i.get("device")})
    return {
        "entry": entry.id,
        "grid": entry.grid,
        "overrides": entry.overrides,
        "grid_folder": grid_dir.name,
        **_when(infos),
        "experiments": int(len(frame)),
        "unfinished": int(sum(status not in ("done", "failed") for status in frame.get("status", []))),
        "machine": {**machine(), "devices": devices,
                    "threads_per_experiment": settings.get("cpus_per_experiment"),
                    "experiments_at_once": settings.get("max_concurrent_runs"),
                    "executor": settings.get("executor", "local")},
        "versions": first.get("versions") or {},
        "commit": commits,
        "dirty": bool(dirty),
    }


def _curves(grid_dir: Path, frame: Any, statistics: list[str]) -> Any:
    import pandas as pd

    from miprometheus.layout import VALIDATION_CSV
    from miprometheus.workers.grid.analysis.collect import read_rows

    wanted = ["loss", *[s for s in statistics if s != "loss"]]
    parts = []
    for identifier, folder in zip(frame["id"], experiment_folders(grid_dir, frame)):
        if not folder:
            continue
        rows = [r for r in read_rows(grid_dir / folder / VALIDATION_CSV) if r.get("episode") not in (None, "")]
        if not rows:
            continue
        if len(rows) > MAX_POINTS:
            step = (len(rows) - 1) / (MAX_POINTS - 1)
            rows = [rows[round(i * step)] for i in range(MAX_POINTS)]
        part = pd.DataFrame(rows)
        part = part[[c for c in ["episode", *wanted] if c in part.columns]].copy()
        part.insert(0, "id", identifier)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["id", "episode"])
    curves = pd.concat(parts, ignore_index=True)
    for column in curves.columns[1:]:
        curves[column] = pd.to_numeric(curves[column], errors="coerce").map(rounded)
    return curves


def import_grid(book: Book, entry: Entry, grid_dir: Path) -> Path:
    """Make ``grid_dir``'s results the committed results of ``entry``; returns the entry's data folder."""
    from miprometheus.layout import MANIFEST
    from miprometheus.workers.grid.analysis import load

    grid_dir = Path(grid_dir)
    if not (grid_dir / MANIFEST).is_file():
        raise BookError(f"{grid_dir} is not a grid folder (it has no {MANIFEST})")
    frame = load(grid_dir)
    if len(frame) == 0:
        raise BookError(f"{grid_dir}: the grid holds no experiment")
    curves = _curves(grid_dir, frame, entry.curves)
    meta = grid_meta(grid_dir, entry, frame)
    kept = frame[[c for c in frame.columns if c not in _DROPPED]].copy()
    kept.insert(0, "id", frame["id"])
    for column in kept.columns:
        if kept[column].dtype == float:
            kept[column] = kept[column].map(rounded)
    search = grid_dir / SEARCH_CSV
    search_text = None
    if search.is_file():
        import pandas as pd

        table = pd.read_csv(search)
        for column in table.columns:
            if table[column].dtype == float:
                table[column] = table[column].map(rounded)
        search_text = table.to_csv(index=False, lineterminator="\n")

    target = book.entry_data(entry.id)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / EXPERIMENTS_CSV, kept.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(target / CURVES_CSV, curves.to_csv(index=False, lineterminator="\n"))
    if search_text is not None:
        atomic_write_text(target / SEARCH_CSV, search_text)
    elif (target / SEARCH_CSV).exists():
        (target / SEARCH_CSV).unlink()
    atomic_write_text(target / META_JSON, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    draw_curves(book, entry)
    return target


def draw_curves(book: Book, entry: Entry) -> list[Path]:
    """``figures/<entry>_<statistic>.png`` for each of the entry's curves: one line per experiment, by task."""
    import pandas as pd
    from matplotlib.figure import Figure

    from miprometheus.workers.grid.analysis.plots import write_png

    data = book.entry_data(entry.id)
    curves = pd.read_csv(data / CURVES_CSV) if (data / CURVES_CSV).is_file() else pd.DataFrame()
    experiments = pd.read_csv(data / EXPERIMENTS_CSV)
    task_of = dict(zip(experiments["id"], experiments.get("task", experiments["id"])))
    written = []
    for statistic in entry.curves:
        if statistic not in curves.columns:
            continue
        figure = Figure(figsize=(7, 4.2))
        axes = figure.add_subplot()
        tasks = list(dict.fromkeys(task_of.get(i, i) for i in curves["id"].unique()))
        colours = {task: f"C{k % 10}" for k, task in enumerate(tasks)}
        labelled: set[str] = set()
        for identifier, part in curves.groupby("id", sort=False):
            task = task_of.get(identifier, identifier)
            part = part.dropna(subset=[statistic])
            axes.plot(part["episode"], part[statistic], color=colours[task], linewidth=1.2, alpha=0.85,
                      label=None if task in labelled else task)
            labelled.add(task)
        axes.set_xlabel("episode")
        axes.set_ylabel(f"validation {statistic}")
        axes.set_title(f"{entry.id}: validation {statistic}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        written.append(write_png(figure, data / FIGURES / f"{entry.id}_{statistic}.png"))
    return written


__all__ = ["CURVES_CSV", "EXPERIMENTS_CSV", "FIGURES", "MAX_POINTS", "META_JSON", "SEARCH_CSV", "cpu_model",
           "draw_curves", "grid_meta", "import_grid", "machine", "rounded"]

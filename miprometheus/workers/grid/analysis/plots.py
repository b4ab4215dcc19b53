"""Learning-curve plots of a grid: one figure per problem, one line per setting, mean ± std over repetitions.

Figures are built with matplotlib's object-oriented API and rendered by the Agg canvas: the
analysis never touches pyplot or the user's matplotlib backend (it runs inside notebooks too).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.files import atomic_write
from miprometheus.layout import PLOTS_DIR
from miprometheus.workers.grid.analysis.collect import CollectedExperiment, read_curves
from miprometheus.workers.grid.analysis.tables import MAIN_STATISTICS, labels
from miprometheus.workers.grid.manifest import DONE

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DPI = 100


def main_statistic(columns: Any) -> str | None:
    """The statistic to show beside the loss among ``columns`` (names without prefix), if any."""
    names = set(columns)
    return next((s for s in MAIN_STATISTICS if s in names), None)


def _points(curves: pd.DataFrame, split: str, statistic: str) -> pd.DataFrame:
    """(episode, value) rows of one split with a finite value, in episode order."""
    import numpy as np
    import pandas as pd

    part = curves[curves["split"] == split]
    points = pd.DataFrame({"episode": pd.to_numeric(part["episode"], errors="coerce"),
                           "value": pd.to_numeric(part[statistic], errors="coerce")})
    points = points.replace([np.inf, -np.inf], np.nan).dropna()
    return points.sort_values(["episode", "value"], kind="stable")


def curve(curves: pd.DataFrame, statistic: str) -> tuple[list[float], list[float], bool] | None:
    """(episodes, values, from_validation) of one experiment's curves (``read_curves``); None when it has none.

    The validation curve when there is one, else the training curve smoothed by a rolling mean.
    """
    if statistic not in curves or "episode" not in curves:
        return None
    points = _points(curves, "validation", statistic)
    from_validation = len(points) > 0
    if not from_validation:
        points = _points(curves, "training", statistic)
        if not len(points):
            return None
        # Per-batch training statistics are noisy: a rolling mean over ~1/20 of the run shows the trend.
        window = max(1, len(points) // 20)
        points = points.assign(value=points["value"].rolling(window, min_periods=1).mean())
    return [float(x) for x in points["episode"]], [float(y) for y in points["value"]], from_validation


def align(curves: list[tuple[list[float], list[float]]]) -> tuple[Any, Any, Any] | None:
    """Mean and std over repetitions on shared episodes (common ones, else interpolated on the overlap)."""
    import numpy as np

    common = sorted(set.intersection(*(set(c[0]) for c in curves)))
    if len(common) >= 2 or (len(curves) == 1 and common):
        xs = np.array(common)
        ys = np.array([[dict(zip(c[0], c[1]))[x] for x in common] for c in curves])
    else:
        low, high = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
        if low > high:
            return None
        xs = np.array(sorted({x for c in curves for x in c[0] if low <= x <= high}))
        ys = np.array([np.interp(xs, c[0], c[1]) for c in curves])
    std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(xs))
    return xs, ys.mean(axis=0), std


def _statistic_of(curves: pd.DataFrame) -> str | None:
    """The main statistic an experiment logged (validation first, else training)."""
    for split in ("validation", "training"):
        part = curves[curves["split"] == split] if "split" in curves else curves.iloc[0:0]
        if len(part):
            return main_statistic(part.dropna(axis=1, how="all").columns)
    return None


def problem_figure(problem: str, settings: list[tuple[str, list[pd.DataFrame]]]) -> Figure | None:
    """The loss (and the main statistic) of each (label, repetitions' curves) over episodes; None if nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    statistic = next((s for _, repetitions in settings for c in repetitions if (s := _statistic_of(c))), None)
    panels = ["loss"] + ([statistic] if statistic else [])
    figure = Figure(figsize=(6.5 * len(panels), 4.8), dpi=DPI)
    FigureCanvasAgg(figure)  # the layout below measures text with this canvas's renderer
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    drawn = False
    sources: dict[str, set[bool]] = {name: set() for name in panels}  # validation (True) or training curves
    for index, (label, repetitions) in enumerate(settings):
        color = f"C{index % 10}"
        for ax, name in zip(axes, panels):
            loaded = [c for c in (curve(r, name) for r in repetitions) if c is not None]
            if not loaded:
                continue
            # Repetitions of one setting are drawn together only if they come from the same kind of curve.
            from_validation = any(c[2] for c in loaded)
            aligned = align([(c[0], c[1]) for c in loaded if c[2] == from_validation])
            if aligned is None:
                continue
            xs, mean, std = aligned
            n = sum(c[2] == from_validation for c in loaded)
            text = f"{label} (n={n})" + ("" if from_validation else " [training, smoothed]")
            ax.plot(xs, mean, color=color, label=text, marker="o" if len(xs) < 30 else None, markersize=3)
            ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            sources[name].add(from_validation)
            drawn = True
    if not drawn:
        return None
    for ax, name in zip(axes, panels):
        ax.set_xlabel("episode")
        kind = {frozenset({True}): "validation ", frozenset({False}): "training "}.get(frozenset(sources[name]), "")
        ax.set_ylabel(f"{kind}{name}")
        ax.set_title(f"{problem}: {kind}{name} (mean ± std over repetitions)")
        ax.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if not handles and len(panels) > 1:
        handles, names = axes[1].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=min(2, max(1, len(names))), fontsize=8, frameon=False)
    # Room under the panels for the legend, one line per two settings.
    figure.tight_layout(rect=(0, min(0.5, 0.04 + 0.05 * math.ceil(len(names) / 2)), 1, 1))
    return figure


def write_plots(folder: Path, experiments: list[CollectedExperiment], rows: list[dict[str, Any]], ids: list[int],
                settings: list[dict[str, Any]], params: list[str]) -> list[Path]:
    """``plots/<Problem>.png`` in ``folder`` for each problem of a grid; the files written.

    ``rows`` and ``ids`` are the experiments' rows and setting numbers, ``settings`` one row per setting.
    """
    members: dict[int, list[int]] = {}
    for index, setting in enumerate(ids):
        members.setdefault(setting, []).append(index)
    by_problem: dict[str, list[int]] = {}
    for setting, row in enumerate(settings):
        by_problem.setdefault(str(row.get("problem") or "unknown"), []).append(setting)
    written = []
    for problem, numbers in by_problem.items():
        plotted = []
        for label, number in zip(labels([settings[n] for n in numbers], params), numbers):
            done = [i for i in members.get(number, []) if rows[i]["status"] == DONE and experiments[i].folder]
            # A setting without a finished repetition still shows what its running ones have so far.
            chosen = done or [i for i in members.get(number, []) if experiments[i].folder is not None]
            if chosen:
                plotted.append((label, [read_curves(experiments[i].folder) for i in chosen]))
        figure = problem_figure(problem, plotted) if plotted else None
        if figure is not None:
            written.append(write_png(figure, folder / PLOTS_DIR / f"{safe_name(problem)}.png"))
    return written


def write_png(figure: Figure, path: Path) -> Path:
    """Render a figure with the Agg canvas and write it atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()), mode="wb")
    return path


def safe_name(text: str) -> str:
    """A problem name as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unknown"

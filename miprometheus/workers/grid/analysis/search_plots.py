"""The search's figures, from its Optuna journal: per task, the best objective so far against the trial number,
the parameters' importances, and the trials as parallel coordinates.

The journal (``search.journal``) is read, never written: a missing one is not opened at all (Optuna's
file backend would create it), and one that cannot be read gives a sentence instead of figures, never an
error (``search_summary.csv`` does not depend on it). Optuna's own ``visualization.matplotlib`` draws
through pyplot, which the analysis never touches (it runs inside notebooks): the figures are drawn here,
from the studies' trials, with matplotlib's object-oriented API like the learning curves.
Importances are PED-ANOVA's (``optuna.importance.PedAnovaImportanceEvaluator``): Optuna's default,
fANOVA, needs scikit-learn, which a grid install does not have.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.layout import PLOTS_DIR, SEARCH_JOURNAL
from miprometheus.workers.grid.analysis.plots import DPI, safe_name, write_png
from miprometheus.workers.grid.analysis.tables import short_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from optuna import Study
    from optuna.trial import FrozenTrial

#: the figures of a task, in the order the report shows them: (file suffix, what it shows)
FIGURES = (("history", "best objective so far"), ("importances", "parameter importances"),
           ("parallel", "trials as parallel coordinates"))


@dataclass
class SearchPlots:
    """The figures written per task, and why any is missing (or why none could be drawn)."""

    plots: dict[str, list[Path]] = field(default_factory=dict)  # task -> its figure files
    notes: dict[str, list[str]] = field(default_factory=dict)  # task -> why a figure is missing
    error: str | None = None  # why the journal could not be read: no figure at all


def read_studies(journal: Path, tasks: list[str]) -> tuple[dict[str, Study], dict[str, str], str | None]:
    """Each task's study (its name is the task's), why a task has none, and why the journal could not be read."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not journal.is_file():
        return {}, {}, f"there is no {journal.name} in the grid folder"
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
    except Exception as exc:  # a corrupt or foreign file: the analysis goes on without the figures
        return {}, {}, f"{journal.name} could not be read ({type(exc).__name__}: {exc})"
    studies, missing = {}, {}
    for task in tasks:
        try:
            studies[task] = optuna.load_study(study_name=task, storage=storage)
        except KeyError:
            missing[task] = f"the journal has no study named {task}"
    return studies, missing, None


def _finished(study: Study) -> list[FrozenTrial]:
    """The completed trials with a value, in trial order."""
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]


def _new_figure(width: float = 6.5, height: float = 4.2) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)  # tight_layout measures text with this canvas's renderer
    return figure


def history_figure(study: Study, task: str, statistic: str) -> Figure | str:
    """Each completed trial's objective and the best so far against the trial number (or why there is none)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    finished = _finished(study)
    if not finished:
        return "no completed trial yet: no history"
    minimize = study.direction == StudyDirection.MINIMIZE
    numbers = [t.number for t in finished]
    values = np.array([t.value for t in finished], dtype=float)
    best = np.minimum.accumulate(values) if minimize else np.maximum.accumulate(values)
    figure = _new_figure()
    ax = figure.subplots()
    ax.plot(numbers, values, "o", color="C0", markersize=4, label="completed trial")
    ax.step(numbers, best, where="post", color="C3", label="best so far")
    # A pruned trial's best reported value: where it stood when the pruner stopped it.
    pruned = [(t.number, (min if minimize else max)(t.intermediate_values.values()))
              for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.plot(*zip(*pruned), "x", color="0.5", label="pruned (best value reported)")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {statistic}")
    ax.set_title(f"{task}: {'lowest' if minimize else 'highest'} validation {statistic} so far")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def importances(study: Study) -> dict[str, float] | str:
    """The parameters' importances (PED-ANOVA), or why they say nothing (too few trials, a single parameter)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    finished = _finished(study)
    names = sorted({name for trial in finished for name in trial.params})
    if len(finished) < 2:
        return f"{len(finished)} completed trial(s): importances need at least 2"
    if len(names) < 2:
        return f"a single parameter ({', '.join(names) or 'none'}): nothing to rank it against"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        except Exception as exc:  # e.g. trials that all drew the same values: the other figures still come
            return f"importances could not be computed ({type(exc).__name__}: {exc})"


def importance_figure(study: Study, task: str) -> Figure | str:
    """A bar per parameter, most important on top (or why there is none)."""
    found = importances(study)
    if isinstance(found, str):
        return found
    names = list(found)[::-1]  # barh draws bottom-up
    short = short_names(names)
    figure = _new_figure(height=1.2 + 0.4 * len(names))
    ax = figure.subplots()
    ax.barh([short[name] for name in names], [found[name] for name in names], color="C0")
    ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
    ax.set_title(f"{task}: parameter importances")
    ax.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def _axis(trials: list[FrozenTrial], name: str) -> tuple[list[float], dict[float, str]]:
    """A parameter's values scaled to [0, 1] (categories by index, log-scaled ones by log), and axis labels.

    The labels: every category where they fit, else the lowest and highest value drawn.
    """
    from optuna.distributions import CategoricalDistribution

    distribution = next(t.distributions[name] for t in trials if name in t.distributions)
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        raw = [float(choices.index(t.params[name])) if name in t.params else math.nan for t in trials]
        low, high = 0.0, float(max(len(choices) - 1, 1))
        shown = range(len(choices)) if len(choices) <= 10 else (0, len(choices) - 1)
        labels = {float(i): str(choices[i]) for i in shown}
    else:
        log = bool(getattr(distribution, "log", False))
        values = [float(t.params[name]) if name in t.params else math.nan for t in trials]
        raw = [math.log10(v) if log and v > 0 else v for v in values]
        present = [v for v in raw if math.isfinite(v)]
        low, high = min(present), max(present)
        labels = {v: f"{10 ** v if log else v:.3g}" for v in (low, high)}
    span = high - low
    scaled = {v: (v - low) / span if span else 0.5 for v in labels}
    return [(v - low) / span if span else 0.5 for v in raw], {scaled[v]: text for v, text in labels.items()}


def parallel_figure(study: Study, task: str, statistic: str) -> Figure | str:
    """One line per completed trial through its parameters and its objective, coloured by the objective."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from optuna.study import StudyDirection

    finished = _finished(study)
    if not finished:
        return "no completed trial yet: no parallel coordinates"
    names = sorted({name for trial in finished for name in trial.params})
    values = [float(t.value) for t in finished]
    axes = [_axis(finished, name) for name in names]
    low, high = min(values), max(values)
    axes.append(([(v - low) / (high - low) if high > low else 0.5 for v in values],
                 {0.0: f"{low:.4g}", 1.0: f"{high:.4g}"} if high > low else {0.5: f"{low:.4g}"}))
    # The best trials drawn last and brightest.
    colormap = colormaps["viridis_r" if study.direction == StudyDirection.MINIMIZE else "viridis"]
    norm = Normalize(low, high if high > low else low + 1)
    order = sorted(range(len(finished)), key=lambda i: values[i], reverse=study.direction == StudyDirection.MINIMIZE)
    figure = _new_figure(width=max(6.5, 1.6 * len(axes) + 2))
    ax = figure.subplots()
    xs = list(range(len(axes)))
    for i in order:
        ax.plot(xs, [axis[0][i] for axis in axes], color=colormap(norm(values[i])), alpha=0.8, linewidth=1.2)
    for x, (_, labels) in zip(xs, axes):
        ax.axvline(x, color="0.3", linewidth=0.8)
        for y, text in labels.items():
            ax.annotate(text, (x, y), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center",
                        bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    short = short_names(names)
    ax.set_xticks(xs, [*(short[name] for name in names), f"validation {statistic}"], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.1, 1.1)
    ax.set_title(f"{task}: {len(finished)} completed trials")
    figure.colorbar(ScalarMappable(norm, colormap), ax=ax, label=f"validation {statistic}")
    figure.tight_layout()
    return figure


def write_search_plots(grid_dir: Path, tasks: list[str], statistic: str) -> SearchPlots:
    """``plots/search_<task>_<figure>.png`` per task from the grid's journal; what could not be drawn, and why."""
    studies, missing, error = read_studies(Path(grid_dir) / SEARCH_JOURNAL, tasks)
    result = SearchPlots(error=error)
    for task in tasks:
        result.plots[task], result.notes[task] = [], [missing[task]] if task in missing else []
        study = studies.get(task)
        if study is None:
            continue
        try:
            drawn: dict[str, Any] = {"history": history_figure(study, task, statistic),
                                     "importances": importance_figure(study, task),
                                     "parallel": parallel_figure(study, task, statistic)}
        except Exception as exc:  # the journal re-read mid-write, odd trial values: the rest of the report comes
            result.notes[task].append(f"the figures could not be drawn ({type(exc).__name__}: {exc})")
            continue
        for kind, what in FIGURES:
            if isinstance(drawn[kind], str):
                result.notes[task].append(f"{what}: {drawn[kind]}")
                continue
            path = Path(grid_dir) / PLOTS_DIR / f"search_{safe_name(task)}_{kind}.png"
            result.plots[task].append(write_png(drawn[kind], path))
    return result


__all__ = ["SearchPlots", "history_figure", "importance_figure", "importances", "parallel_figure", "read_studies",
           "write_search_plots"]

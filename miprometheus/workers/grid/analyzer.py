"""The grid analyzer: every experiment side by side, a summary over repetitions, learning curves and a report.

``analyze(grid_dir)`` reads a grid folder (its manifest, the experiments' configs and folders) and writes
into it:

- ``grid_analysis.csv``: one row per experiment (finished or not): the parameters that differ between
  experiments, the best validation and the newest test statistics, episodes, wall time, status, errors;
- ``grid_summary.csv``: one row per setting (task + differing parameters), mean and sample std of every
  statistic over the finished repetitions, ``n`` and ``failed``;
- ``plots/<Problem>.png``: validation learning curves, mean ± std over repetitions, one line per setting;
- ``report.html``: all of the above on one self-contained page.

Everything it reads may be missing or partial (a grid still running, a failed experiment, an old
``run_info.json``): such values stay empty rather than stopping the analysis.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from miprometheus.files import atomic_write_text
from miprometheus.workers.grid.manifest import DONE, FAILED, ExperimentRecord, Manifest

ANALYSIS_CSV = "grid_analysis.csv"
SUMMARY_CSV = "grid_summary.csv"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
GRID_CONFIG = "grid_configuration.yaml"
TRAINING_CONFIG = "training_configuration.yaml"
RUN_INFO = "run_info.json"
TRAINING_CSV = "training_statistics.csv"
VALIDATION_CSV = "validation_statistics.csv"
TEST_AGG_CSV = "testing_set_agg_statistics.csv"

# Config keys with a column of their own (seed, model, problem), so not listed again as parameters.
OWN_COLUMNS = {"training.seed": "seed", "model.name": "model", "training.problem.name": "problem"}
# Columns of the statistics files that are bookkeeping, not results.
NOT_STATISTICS = {"episode", "epoch", "time", "samples_aggregated", "episodes_aggregated"}
AGGREGATE_SUFFIXES = ("_min", "_max", "_std")
# The statistic shown beside the loss (second plot panel, console column), first one present wins.
MAIN_STATISTICS = ("acc", "accuracy", "bleu", "f1", "top1", "precision", "recall")


@dataclass
class AnalysisResult:
    """What ``analyze`` wrote and the tables it computed (rows as dicts, column name -> value)."""

    grid_dir: Path
    analysis_csv: Path
    summary_csv: Path
    report_html: Path
    plots: list[Path]
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    params: list[str]  # the differing config keys (dotted), as they appear in the tables
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Experiment:
    """Everything read about one experiment, before it becomes a row."""

    record: ExperimentRecord
    folder: Path | None
    flat: dict[str, Any]
    run_info: dict[str, Any]
    test: dict[str, Any]


# ----------------------------------------------------------------------------------------------- reading


def _read_yaml(path: Path) -> Any:
    from miprometheus.config.yaml_loader import safe_load

    try:
        return safe_load(path.read_text())
    except Exception:  # a broken file must not stop the analysis of the others
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> Any:
    """A CSV cell as int/float when it is one, else the text (or None when empty)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a statistics CSV, numbers parsed; [] when it is missing or unreadable."""
    try:
        with path.open(newline="") as handle:
            return [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(handle)]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted key -> leaf value (a list stays one value)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def _newest_test(folder: Path) -> dict[str, Any]:
    """The aggregated statistics of the newest test run of an experiment folder ({} when none)."""
    # Test folders are named test_<YYYYmmdd_HHMMSS>[_n]: the name order is the time order.
    for test_dir in sorted(folder.glob("test_*"), reverse=True):
        rows = _read_csv(test_dir / TEST_AGG_CSV)
        if rows:
            return rows[-1]
    return {}


def _load(grid_dir: Path, record: ExperimentRecord) -> _Experiment:
    folder = grid_dir / record.folder if record.folder else None
    if folder is not None and not folder.is_dir():
        folder = None
    # The effective config (every parameter) when the experiment ran, else the grid's config for it.
    tree = _read_yaml(folder / TRAINING_CONFIG) if folder else None
    if not isinstance(tree, dict):
        config = grid_dir / (record.config or f"configs/{record.id}.yaml")
        tree = _read_yaml(config) if config.is_file() else None
    flat = _flatten(tree if isinstance(tree, dict) else {})
    for key, value in (record.sweep or {}).items():
        flat.setdefault(key, value)
    run_info = _read_json(folder / RUN_INFO) if folder else {}
    test = _newest_test(folder) if folder else {}
    return _Experiment(record, folder, flat, run_info, test)


# ------------------------------------------------------------------------------------------- the tables


def _canonical(value: Any) -> str:
    """A comparable form of a config value: 10 and 10.0 are the same, lists compare by content."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return json.dumps(value, sort_keys=True, default=str)


def _differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ between experiments, in config order.

    A key is compared only between the experiments that have it: a key missing from some because
    their sub-config is absent (or because only the grid's sparse config exists yet) is no difference.
    """
    order: dict[str, None] = {}
    for flat in flats:
        order.update(dict.fromkeys(flat))
    keys = []
    for key in order:
        if key in OWN_COLUMNS:
            continue
        values = {_canonical(flat[key]) for flat in flats if key in flat}
        if len(values) > 1:
            keys.append(key)
    return keys


def _means(statistics_row: Any) -> dict[str, Any]:
    """The mean statistics of an aggregated row (no _min/_max/_std, no bookkeeping columns)."""
    if not isinstance(statistics_row, dict):
        return {}
    keys = set(statistics_row)
    means = {}
    for key, value in statistics_row.items():
        if key in NOT_STATISTICS:
            continue
        if key.endswith(AGGREGATE_SUFFIXES) and key[:-4] in keys:
            continue
        means[key] = _number(value) if isinstance(value, str) else value
    return means


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def _wall_time(run_info: dict[str, Any], record: ExperimentRecord) -> float | None:
    start, end = _parse_time(run_info.get("start_time")), _parse_time(run_info.get("end_time"))
    if start is not None and end is not None:
        try:
            return (end - start).total_seconds()
        except TypeError:  # one naive, one aware
            pass
    if record.started is not None and record.ended is not None:
        return round(record.ended - record.started, 3)
    return None


def _display(value: Any) -> Any:
    """A config value as a table cell: lists and dicts as JSON, scalars as they are."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def _row(experiment: _Experiment, params: list[str]) -> dict[str, Any]:
    record, info, flat = experiment.record, experiment.run_info, experiment.flat
    row: dict[str, Any] = {"id": record.id, "task": record.task, "repetition": record.repetition,
                           "status": record.status}
    row.update({key: _display(flat.get(key)) for key in params})
    seed = info.get("seed", flat.get("training.seed", record.seed))
    row["seed"] = seed if seed is not None else record.seed
    row["model"] = flat.get("model.name")
    row["problem"] = flat.get("training.problem.name")
    row.update({f"val_{k}": v for k, v in _means(info.get("best_validation_statistics")).items()})
    row.update({f"test_{k}": v for k, v in _means(experiment.test).items()})
    row["best_episode"] = info.get("best_episode")
    row["episodes"] = info.get("episodes")
    row["wall_time_s"] = _wall_time(info, record)
    row["termination_cause"] = info.get("termination_cause")
    row["attempts"] = record.attempts
    row["test_status"] = record.test_status
    row["last_error"] = record.last_error
    row["folder"] = record.folder
    return row


def _columns(rows: list[dict[str, Any]], params: list[str]) -> list[str]:
    """The analysis columns: identity, parameters, statistics (loss first), then the run's facts."""
    head = ["id", "task", "repetition", "status", *params, "seed", "model", "problem"]
    tail = ["best_episode", "episodes", "wall_time_s", "termination_cause", "attempts", "test_status",
            "last_error", "folder"]
    stats: dict[str, list[str]] = {"val_": [], "test_": []}
    for row in rows:
        for key in row:
            for prefix, found in stats.items():
                if key.startswith(prefix) and key not in head and key not in tail and key not in found:
                    found.append(key)
    ordered = []
    for prefix, found in stats.items():
        ordered += sorted(found, key=lambda k, p=prefix: (k != f"{p}loss", found.index(k)))
    return head + ordered + tail


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _setting_columns(params: list[str]) -> list[str]:
    """The columns that identify a setting (everything but the repetition and its seed)."""
    return ["task", "model", "problem", *params]


def _groups(rows: list[dict[str, Any]], missing: list[set[str]], setting: list[str]) -> list[list[int]]:
    """The settings: indices of the rows that are repetitions of one another, in the manifest's order.

    A row whose config lacks some parameters (an experiment that has not run yet has only the grid's
    sparse config) joins the first setting it agrees with on the parameters it has.
    """
    keys = [{c: _canonical(row.get(c)) for c in setting if c not in absent} for row, absent in zip(rows, missing)]
    groups: list[list[int]] = []
    complete = [i for i in range(len(rows)) if not missing[i]]
    for i in complete + [i for i in range(len(rows)) if missing[i]]:
        for group in groups:
            first = keys[group[0]]
            if all(first.get(c, v) == v for c, v in keys[i].items()):
                group.append(i)
                break
        else:
            groups.append([i])
    for group in groups:
        group.sort()
    return sorted(groups, key=lambda g: g[0])


def _summarize(rows: list[dict[str, Any]], groups: list[list[int]], params: list[str],
               stat_columns: list[str]) -> list[dict[str, Any]]:
    """One row per setting: mean and sample std of each statistic over its finished repetitions."""
    setting = _setting_columns(params)
    summary = []
    for group in groups:
        members = [rows[i] for i in group]
        finished = [r for r in members if r["status"] == DONE]
        out: dict[str, Any] = {column: members[0].get(column) for column in setting}
        out["n"] = len(finished)
        out["failed"] = sum(r["status"] == FAILED for r in members)
        out["experiments"] = len(members)
        for column in stat_columns:
            values = [r[column] for r in finished if _is_number(r.get(column))]
            mean, std = _mean_std(values) if values else (None, None)
            out[f"{column}_mean"], out[f"{column}_std"] = mean, std
        summary.append(out)
    return summary


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- labels


def _short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix that still tells each key apart (labels stay readable)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(other == suffix or other.endswith("." + suffix) for other in keys) == 1:
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _labels(settings: list[dict[str, Any]], params: list[str]) -> list[str]:
    """Each setting's name: its task, then the parameters that tell it apart from the task's other settings.

    The task already names its model and problem, so a task with one setting is named by the task alone.
    """
    columns = ["model", "problem", *params]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in settings:
        by_task.setdefault(str(row.get("task")), []).append(row)
    varying = {task: _varying(rows, columns) for task, rows in by_task.items()}
    short = _short_names(sorted({c for found in varying.values() for c in found}))
    labels = []
    for row in settings:
        parts = [f"{short.get(c, c)}={'?' if row.get(c) is None else _format_value(row.get(c))}"
                 for c in varying[str(row.get("task"))]]
        labels.append(str(row.get("task")) + (" / " + ", ".join(parts) if parts else ""))
    return labels


def _varying(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    return [c for c in columns if len({_canonical(r.get(c)) for r in rows}) > 1]


# ----------------------------------------------------------------------------------------------- plots


def _main_statistic(columns: Any) -> str | None:
    names = set(columns)
    return next((s for s in MAIN_STATISTICS if s in names), None)


def _curve(folder: Path | None, statistic: str) -> tuple[list[float], list[float], bool] | None:
    """(episodes, values, from_validation) of one experiment; the smoothed training curve without validation."""
    if folder is None:
        return None
    rows = [r for r in _read_csv(folder / VALIDATION_CSV) if _is_number(r.get("episode"))]
    validation = any(_is_number(r.get(statistic)) for r in rows)
    if not validation:
        rows = [r for r in _read_csv(folder / TRAINING_CSV) if _is_number(r.get("episode"))]
    points = sorted((float(r["episode"]), float(r[statistic])) for r in rows if _is_number(r.get(statistic)))
    if not points:
        return None
    episodes, values = [p[0] for p in points], [p[1] for p in points]
    if not validation:
        # Per-batch training statistics are noisy: a rolling mean over ~1/20 of the run shows the trend.
        window = max(1, len(values) // 20)
        values = [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]
    return episodes, values, validation


def _align(curves: list[tuple[list[float], list[float]]]) -> tuple[Any, Any, Any] | None:
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


def _folder_statistic(folder: Path | None) -> str | None:
    """The main statistic an experiment logged (validation CSV first, else training CSV)."""
    if folder is None:
        return None
    for name in (VALIDATION_CSV, TRAINING_CSV):
        rows = _read_csv(folder / name)
        if rows:
            return _main_statistic(rows[0])
    return None


def _plot_problem(path: Path, problem: str, groups: list[tuple[str, list[Path | None]]]) -> bool:
    """One figure: the loss (and the main statistic) of each setting over episodes; False when nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    statistic = next((s for _, folders in groups for f in folders if (s := _folder_statistic(f))), None)
    panels = ["loss"] + ([statistic] if statistic else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    drawn = False
    sources: dict[str, set[bool]] = {name: set() for name in panels}  # validation (True) or training curves
    for index, (label, folders) in enumerate(groups):
        color = f"C{index % 10}"
        for ax, name in zip(axes[0], panels):
            loaded = [c for c in (_curve(f, name) for f in folders) if c is not None]
            if not loaded:
                continue
            # Repetitions of one setting are plotted together only if they come from the same kind of curve.
            from_validation = any(c[2] for c in loaded)
            aligned = _align([(c[0], c[1]) for c in loaded if c[2] == from_validation])
            if aligned is None:
                continue
            xs, mean, std = aligned
            n = sum(c[2] == from_validation for c in loaded)
            text = f"{label} (n={n})" + ("" if from_validation else " [training, smoothed]")
            ax.plot(xs, mean, color=color, label=text, marker="o" if len(xs) < 30 else None, markersize=3)
            ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            sources[name].add(from_validation)
            drawn = True
    for ax, name in zip(axes[0], panels):
        ax.set_xlabel("episode")
        kind = {frozenset({True}): "validation ", frozenset({False}): "training "}.get(frozenset(sources[name]), "")
        ax.set_ylabel(f"{kind}{name}")
        ax.set_title(f"{problem}: {kind}{name} (mean ± std over repetitions)")
        ax.grid(True, alpha=0.3)
    if drawn:
        handles, labels = axes[0][0].get_legend_handles_labels()
        if not handles and len(panels) > 1:
            handles, labels = axes[0][1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(2, max(1, len(labels))), fontsize=8,
                   frameon=False)
        # Room under the panels for the legend, one line per two settings.
        bottom = min(0.5, 0.04 + 0.05 * math.ceil(len(labels) / 2))
        fig.tight_layout(rect=(0, bottom, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unknown"


def _plots(grid_dir: Path, experiments: list[_Experiment], rows: list[dict[str, Any]], groups: list[list[int]],
           params: list[str]) -> list[Path]:
    by_problem: dict[str, list[list[int]]] = {}
    for group in groups:
        by_problem.setdefault(str(rows[group[0]].get("problem") or "unknown"), []).append(group)
    written = []
    for problem, problem_groups in by_problem.items():
        labels = _labels([rows[members[0]] for members in problem_groups], params)
        plotted = []
        for label, members in zip(labels, problem_groups):
            done = [i for i in members if rows[i]["status"] == DONE and experiments[i].folder is not None]
            # A setting without a finished repetition still shows what its running ones have so far.
            chosen = done or [i for i in members if experiments[i].folder is not None]
            if chosen:
                plotted.append((label, [experiments[i].folder for i in chosen]))
        path = grid_dir / PLOTS_DIR / f"{_safe_name(problem)}.png"
        if plotted and _plot_problem(path, problem, plotted):
            written.append(path)
    return written


# ---------------------------------------------------------------------------------------------- report


def _mean_pm_std(row: dict[str, Any], column: str) -> str:
    mean, std = row.get(f"{column}_mean"), row.get(f"{column}_std")
    if not _is_number(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if _is_number(std) else f"{mean:.4g}"


def _html_table(rows: list[dict[str, Any]], columns: list[str], headers: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (headers or columns))
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            css = ' class="num"' if _is_number(value) else ""
            cells.append(f"<td{css}>{html.escape(_format_value(value))}</td>")
        css = f' class="{html.escape(str(row["status"]))}"' if "status" in row else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _failures(experiments: list[_Experiment]) -> list[dict[str, Any]]:
    """Each failed training or test: which experiment, where its log is, its last error line."""
    failures = []
    for experiment in experiments:
        record = experiment.record
        if record.status == FAILED:
            failures.append({"id": record.id, "stage": "train", "log": record.log, "exit_code": record.exit_code,
                             "last_error": record.last_error})
        if record.test_status == FAILED:
            failures.append({"id": record.id, "stage": "test", "log": record.test_log,
                             "exit_code": record.test_exit_code, "last_error": record.test_last_error})
    return failures


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } tr.pending td, tr.running td { color: #888; }
.scroll { overflow-x: auto; max-width: 100%; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.meta { color: #666; }
"""


def _report(grid_dir: Path, info: dict[str, Any], counts: dict[str, int], summary: list[dict[str, Any]],
            summary_columns: list[str], rows: list[dict[str, Any]], columns: list[str],
            failures: list[dict[str, Any]], plots: list[Path]) -> str:
    grid_file = _read_yaml(grid_dir / GRID_CONFIG) if (grid_dir / GRID_CONFIG).is_file() else None
    description = grid_file.get("description") if isinstance(grid_file, dict) else None
    name = html.escape(grid_dir.name)
    status = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    meta = [f"{len(rows)} experiments: {html.escape(status)}"]
    if info.get("grid_file"):
        meta.append(f"grid file: <code>{html.escape(str(info['grid_file']))}</code>")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{name}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>Grid {name}</h1>"]
    if description:
        parts.append(f"<p>{html.escape(str(description))}</p>")
    parts.append(f"<p class='meta'>{'<br>'.join(meta)}</p>")
    # Each statistic as one "mean ± std" cell: half as many columns as the CSV, easier to compare.
    stats = [c[:-5] for c in summary_columns if c.endswith("_mean")]
    plain = [c for c in summary_columns if not c.endswith(("_mean", "_std"))]
    shown = [{**{c: row.get(c) for c in plain}, **{s: _mean_pm_std(row, s) for s in stats}} for row in summary]
    parts.append("<h2>Summary (over repetitions: mean ± sample std of the finished ones)</h2>"
                 f"<div class='scroll'>{_html_table(shown, plain + stats)}</div>")
    parts.append("<h2>Failures</h2>")
    if failures:
        parts.append(_html_table(failures, ["id", "stage", "log", "exit_code", "last_error"]))
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Learning curves</h2>")
    for plot in plots:
        relative = plot.relative_to(grid_dir).as_posix()
        parts.append(f"<div><img src='{html.escape(relative)}' alt='{html.escape(plot.stem)}'></div>")
    if not plots:
        parts.append("<p>No learning curves yet.</p>")
    parts.append(f"<h2>All experiments</h2><div class='scroll'>{_html_table(rows, columns)}</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _print_console(summary: list[dict[str, Any]], params: list[str], plots: list[Path],
                   stat_columns: list[str], grid_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    main = _main_statistic(c.split("_", 1)[1] for c in stat_columns)
    table = Table(title=f"Grid {grid_dir.name}")
    table.add_column("setting")
    for header in ("n", "failed", "val loss", f"val {main or 'acc'}", f"test {main or 'acc'}"):
        table.add_column(header, justify="right")
    for row, label in zip(summary, _labels(summary, params)):
        table.add_row(label, str(row["n"]), str(row["failed"]),
                      _mean_pm_std(row, "val_loss"), _mean_pm_std(row, f"val_{main}"),
                      _mean_pm_std(row, f"test_{main}"))
    console = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes: no wrapping
    console.print(table)
    for plot in plots:
        console.print(f"plot: {plot}", soft_wrap=True, highlight=False)


# ------------------------------------------------------------------------------------------------- API


def analyze(grid_dir: Path, console: bool = True) -> AnalysisResult:
    """Analyse a grid folder: write its analysis and summary CSVs, learning-curve plots and HTML report."""
    grid_dir = Path(grid_dir)
    manifest = Manifest.load(grid_dir)
    experiments = [_load(grid_dir, record) for record in manifest.records]
    params = _differing_keys([e.flat for e in experiments])
    rows = [_row(e, params) for e in experiments]
    columns = _columns(rows, params)
    stat_columns = [c for c in columns if (c.startswith("val_") or c.startswith("test_"))
                    and any(_is_number(r.get(c)) for r in rows)]
    # Rows missing parameters (sparse configs) come after complete ones when groups form.
    missing = [{OWN_COLUMNS.get(k, k) for k in (*params, "model.name", "training.problem.name") if k not in e.flat}
               for e in experiments]
    groups = _groups(rows, missing, _setting_columns(params))
    summary = _summarize(rows, groups, params, stat_columns)
    summary_columns = [*_setting_columns(params), "n", "failed", "experiments"]
    for column in stat_columns:
        summary_columns += [f"{column}_mean", f"{column}_std"]

    analysis_csv, summary_csv = grid_dir / ANALYSIS_CSV, grid_dir / SUMMARY_CSV
    atomic_write_text(analysis_csv, _csv_text(rows, columns))
    atomic_write_text(summary_csv, _csv_text(summary, summary_columns))
    plots = _plots(grid_dir, experiments, rows, groups, params)
    failures = _failures(experiments)
    report = grid_dir / REPORT_HTML
    atomic_write_text(report, _report(grid_dir, manifest.info, manifest.counts(), summary, summary_columns, rows,
                                      columns, failures, plots))
    if console:
        _print_console(summary, params, plots, stat_columns, grid_dir)
    return AnalysisResult(grid_dir, analysis_csv, summary_csv, report, plots, rows, summary, params, failures)

"""``analyze``: a grid folder's CSV tables, plots, HTML report and console table, written into it.

- ``grid_analysis.csv``: one row per experiment (finished or not), the columns of ``load``;
- ``grid_summary.csv``: one row per setting, mean and sample std of every statistic over the finished
  repetitions, ``n``, ``failed`` and ``experiments``; columns that say nothing are left out (a setting
  column constant over the grid or repeating another, a statistic with the same value everywhere);
- ``plots/<Problem>.png``: learning curves, mean ± std over repetitions, one line per setting;
- with a search: ``search_summary.csv`` (``search_summary``: per task the best trial, its re-evaluation on
  fresh seeds, the budget spent, the comparison of tasks on a problem) and ``plots/search_<task>_*.png``
  (``search_plots``: history, importances, parallel coordinates, from the Optuna journal);
- ``report.html``: all of the above on one self-contained page.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.files import atomic_write_text
from miprometheus.layout import ANALYSIS_CSV, GRID_CONFIG, REPORT_HTML, SEARCH_JOURNAL, SEARCH_SUMMARY_CSV, SUMMARY_CSV
from miprometheus.workers.grid.analysis.collect import CollectedExperiment, Collection, collect, is_number, read_yaml
from miprometheus.workers.grid.analysis.plots import main_statistic, write_plots
from miprometheus.workers.grid.analysis.search_plots import SearchPlots, write_search_plots
from miprometheus.workers.grid.analysis.search_summary import FEW_SEEDS, SIGNIFICANCE, SearchSummary, search_summary
from miprometheus.workers.grid.analysis.tables import (
    csv_text,
    experiment_table,
    format_value,
    labels,
    setting_ids,
    statistic_name,
    summarize,
)
from miprometheus.workers.grid.manifest import FAILED, Manifest
from miprometheus.workers.grid.spec import load_settings


@dataclass
class AnalysisResult:
    """What ``analyze`` wrote and the tables it computed (rows as dicts, column name -> value)."""

    grid_dir: Path
    analysis_csv: Path
    summary_csv: Path
    report_html: Path
    plots: list[Path]
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]  # the columns of grid_summary.csv
    params: list[str]  # the differing config keys (dotted), as they appear in the tables
    failures: list[dict[str, Any]] = field(default_factory=list)
    search_summary_csv: Path | None = None  # with a search
    search: list[dict[str, Any]] = field(default_factory=list)  # the rows of search_summary.csv
    search_plots: list[Path] = field(default_factory=list)  # plots/search_<task>_<figure>.png


def _mean_pm_std(row: dict[str, Any], column: str) -> str:
    mean, std = row.get(f"{column}_mean"), row.get(f"{column}_std")
    if not is_number(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if is_number(std) else f"{mean:.4g}"


def html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an HTML table of ``columns``; a row's ``status`` names its class (the CSS colours failures)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            css = ' class="num"' if is_number(value) else ""
            cells.append(f"<td{css}>{html.escape(format_value(value))}</td>")
        css = f' class="{html.escape(str(row["status"]))}"' if "status" in row else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _failures(experiments: list[CollectedExperiment]) -> list[dict[str, Any]]:
    """Each failed training or test: which experiment, where its log is, its last error line."""
    failures = []
    for record in (e.record for e in experiments if e.record is not None):
        if record.status == FAILED:
            failures.append({"id": record.id, "stage": "train", "log": record.log, "exit_code": record.exit_code,
                             "last_error": record.last_error})
        if record.test_status == FAILED:
            failures.append({"id": record.id, "stage": "test", "log": record.test_log,
                             "exit_code": record.test_exit_code, "last_error": record.test_last_error})
    return failures


# ------------------------------------------------------------------------------------------------ search


def _interval_text(row: dict[str, Any], column: str) -> str:
    """A re-evaluated test statistic as one cell: mean ± std, the 95 % interval and the number of seeds."""
    n, mean, std = row.get(f"{column}_n"), row.get(f"{column}_mean"), row.get(f"{column}_std")
    if not is_number(mean):
        return "—"
    if not is_number(std):
        return f"{mean:.4g} (n={n})"
    low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    return f"{mean:.4g} ± {std:.2g} [{low:.4g}, {high:.4g}] n={n}"


def _trials_text(row: dict[str, Any]) -> str:
    """``7 done, 2 pruned, 1 failed of 10``: the states a task's trials are in (none left out but zeros)."""
    states = [f"{row[c]} {c[len('trials_'):]}" for c in row
              if c.startswith("trials_") and c != "trials_budget" and (row[c] or c == "trials_done")]
    budget = row.get("trials_budget")
    return ", ".join(states) + (f" of {budget}" if budget is not None else "")


def _compute_text(row: dict[str, Any]) -> str:
    wall, episodes = row.get("compute_wall_time_s"), row.get("compute_episodes")
    parts = [f"{wall:.0f} s" if is_number(wall) else "", f"{episodes} episodes" if is_number(episodes) else ""]
    return ", ".join(part for part in parts if part)


def _p_text(p: Any, comparison: str) -> str:
    """A p-value as a cell, flagged where few seeds make it weak (the comparison sentence says why)."""
    if not is_number(p):
        return ""
    return f"{p:.3g}" + (" (few seeds)" if "few seeds" in comparison else "")


def search_display(summary: SearchSummary) -> tuple[list[dict[str, Any]], list[str]]:
    """The search summary as the console and the HTML page show it: one readable cell per idea."""
    statistic = summary.settings.objective.statistic
    tests = {c: "test" if c.startswith("test_") else c[len("test["):c.index("]")] for c in summary.tests}
    tests = {c: f"{name} {statistic} [95% CI]" for c, name in tests.items()}
    shown = []
    for row in summary.rows:
        p = row.get("p_value")
        shown.append({"task": row["task"], "problem": row.get("problem"), "trials": _trials_text(row),
                      "best trial": row.get("best_trial"), "best parameters": row.get("best_params"),
                      f"search {statistic}": row.get("search_value"), "compute": _compute_text(row),
                      **{label: _interval_text(row, c) for c, label in tests.items()},
                      "p vs best": _p_text(p, str(row.get("comparison"))), "comparison": row.get("comparison")})
    columns = ["task", "problem", "trials", "best trial", "best parameters", f"search {statistic}", "compute",
               *tests.values(), "p vs best", "comparison"]
    return shown, columns


def _search_intro(summary: SearchSummary) -> list[str]:
    """What the search table means, sentence by sentence (the console and the page say the same)."""
    settings = summary.settings
    objective = settings.objective
    budget = f"{settings.trials} trials per task" if settings.trials is not None else "trials per task not recorded"
    seeds = f"{settings.seeds} fresh seeds" if settings.seeds is not None else "fresh seeds"
    sentences = [f"Objective: {objective.direction} the best validation {objective.statistic}; budget: {budget}.",
                 f"Each task's best trial is re-trained on {seeds} and tested: mean ± sample std, 95% CI from "
                 f"Student's t (n - 1 degrees of freedom). On each problem the task with the best mean of "
                 f"{summary.compared} is compared with each other one by Welch's t-test, significant below "
                 f"{SIGNIFICANCE}."]
    if summary.few_seeds:
        sentences.append(f"Few seeds (at most {FEW_SEEDS} on a side) give wide intervals: a p-value from them "
                         f"misses real differences and is no proof of equality.")
    return sentences


def _search_section(grid_dir: Path, summary: SearchSummary, plots: SearchPlots) -> str:
    rows, columns = search_display(summary)
    journal = html.escape(str(grid_dir / SEARCH_JOURNAL))
    parts = ["<h2>Search</h2>", *(f"<p>{html.escape(s)}</p>" for s in _search_intro(summary)),
             f"<div class='scroll'>{html_table(rows, columns)}</div>",
             f"<p class='meta'>Every trial in detail: <code>optuna-dashboard {journal}</code>; "
             f"the numbers: <code>{SEARCH_SUMMARY_CSV}</code>.</p>"]
    if plots.error:
        parts.append(f"<p>No search figures: {html.escape(plots.error)}. The table above comes from the manifest "
                     "and the experiment folders, not from the journal.</p>")
    for task in summary.tasks:
        figures = plots.plots.get(task, [])
        notes = plots.notes.get(task, [])
        if not figures and not notes:
            continue
        parts.append(f"<h3>{html.escape(task)}</h3>")
        for plot in figures:
            relative = plot.relative_to(grid_dir).as_posix()
            parts.append(f"<div><img src='{html.escape(relative)}' alt='{html.escape(plot.stem)}'></div>")
        parts += [f"<p class='meta'>{html.escape(note)}</p>" for note in notes]
    return "\n".join(parts)


def _print_search(console: Any, grid_dir: Path, summary: SearchSummary) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows, columns = search_display(summary)
    # The long cells follow the table, one line per task: the table stays readable in 140 columns.
    below = ("best parameters", "compute", "comparison")
    # Column names hold brackets (test[length_20]_loss, [95% CI]) that rich would read as markup.
    table = Table(title=escape(f"Search of {grid_dir.name}"))
    numbers = ("search ", "best trial", "p vs")
    for column in columns:
        if column not in below:
            table.add_column(escape(column), justify="right" if column.startswith(numbers) else "left",
                             no_wrap=column in ("task", "problem"))
    for row in rows:
        table.add_row(*(escape(format_value(row.get(column))) for column in columns if column not in below))
    console.print(table)
    lines = [f"{row['task']}: best trial {format_value(row.get('best trial'))}; "
             + "; ".join(format_value(row.get(column)) for column in below if row.get(column)) for row in rows]
    lines += [*_search_intro(summary), f"every trial: optuna-dashboard {grid_dir / SEARCH_JOURNAL}"]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } tr.pending td, tr.running td { color: #888; }
tr.live-running td { background: #eaf6ea; } tr.live-failed td { background: #fde8e8; }
tr.live-interrupted td { background: #fff4d6; } tr.live-queued td { color: #888; }
.stale { background: #fff4d6; padding: 0.5em; }
.scroll { overflow-x: auto; max-width: 100%; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.meta { color: #666; }
"""


def page(grid_dir: Path, manifest: Manifest, sections: list[str], refresh: int | None = None) -> str:
    """A report page: the grid's name, description and counts, then ``sections`` (HTML). With ``refresh``, the
    page written while the grid runs: the browser loads it again every ``refresh`` seconds."""
    grid_file = read_yaml(grid_dir / GRID_CONFIG) if (grid_dir / GRID_CONFIG).is_file() else None
    description = grid_file.get("description") if isinstance(grid_file, dict) else None
    name = html.escape(grid_dir.name)
    status = ", ".join(f"{count} {state}" for state, count in sorted(manifest.counts().items()))
    meta = [f"{len(manifest.records)} experiments: {html.escape(status)}"]
    if manifest.info.get("grid_file"):
        meta.append(f"grid file: <code>{html.escape(str(manifest.info['grid_file']))}</code>")
    head = f"<meta http-equiv='refresh' content='{refresh}'>" if refresh else ""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}<title>{name}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>Grid {name}</h1>"]
    if description:
        parts.append(f"<p>{html.escape(str(description))}</p>")
    parts.append(f"<p class='meta'>{'<br>'.join(meta)}</p>")
    parts += sections
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _sections(grid_dir: Path, summary: list[dict[str, Any]], summary_columns: list[str], rows: list[dict[str, Any]],
              columns: list[str], failures: list[dict[str, Any]], plots: list[Path], search: str = "") -> list[str]:
    """The report's sections: summary, search, failures, learning curves, every experiment."""
    # Each statistic as one "mean ± std" cell: half as many columns as the CSV, easier to compare.
    stats = [c[:-5] for c in summary_columns if c.endswith("_mean")]
    plain = [c for c in summary_columns if not c.endswith(("_mean", "_std"))]
    shown = [{**{c: row.get(c) for c in plain}, **{s: _mean_pm_std(row, s) for s in stats}} for row in summary]
    parts = ["<h2>Summary (over repetitions: mean ± sample std of the finished ones)</h2>"
             f"<div class='scroll'>{html_table(shown, plain + stats)}</div>"]
    if search:
        parts.append(search)
    parts.append("<h2>Failures</h2>")
    if failures:
        parts.append(html_table(failures, ["id", "stage", "log", "exit_code", "last_error"]))
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Learning curves</h2>")
    for plot in plots:
        relative = plot.relative_to(grid_dir).as_posix()
        parts.append(f"<div><img src='{html.escape(relative)}' alt='{html.escape(plot.stem)}'></div>")
    if not plots:
        parts.append("<p>No learning curves yet.</p>")
    parts.append(f"<h2>All experiments</h2><div class='scroll'>{html_table(rows, columns)}</div>")
    return parts


def print_console(grid_dir: Path, summary: list[dict[str, Any]], names: list[str], statistics: list[str],
                  plots: list[Path], extra: list[str] | None = None, search: SearchSummary | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    main = main_statistic(statistic_name(c) for c in statistics) or "acc"
    # The standard test, and one column per other test setting (test[length_20]_acc, ...) that has the statistic.
    tests = [c[:-len(main)] for c in statistics if c.startswith("test") and c.endswith(f"_{main}")]
    tests = sorted(dict.fromkeys(tests), key=lambda prefix: prefix != "test_") or ["test_"]
    table = Table(title=f"Grid {grid_dir.name}")
    table.add_column("setting")
    # the grid's report_statistics, for every test setting that has them (Sort-of-CLEVR's acc_relational, ...)
    extra_columns = [(p, name) for name in extra or [] for p in tests if f"{p}{name}" in statistics]
    headers = ["n", "failed", "val loss", f"val {main}",
               *(f"test {main}" if p == "test_" else f"{p[5:-2]} {main}" for p in tests),
               *(f"test {name}" if p == "test_" else f"{p[5:-2]} {name}" for p, name in extra_columns)]
    for header in headers:
        table.add_column(header, justify="right")
    for row, name in zip(summary, names):
        table.add_row(name, str(row["n"]), str(row["failed"]), _mean_pm_std(row, "val_loss"),
                      _mean_pm_std(row, f"val_{main}"), *(_mean_pm_std(row, f"{p}{main}") for p in tests),
                      *(_mean_pm_std(row, f"{p}{stat}") for p, stat in extra_columns))
    console = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes: no wrapping
    console.print(table)
    if search is not None:
        _print_search(console, grid_dir, search)
    for plot in plots:
        console.print(f"plot: {plot}", soft_wrap=True, highlight=False)


def analyze(grid_dir: Path, console: bool = True) -> AnalysisResult:
    """Analyse a grid folder: write its analysis and summary CSVs, learning-curve plots and HTML report."""
    grid_dir = Path(grid_dir)
    # a folder that is no grid, or a damaged one, is a ConfigError before anything is written
    manifest = Manifest.load(grid_dir)
    if (grid_dir / GRID_CONFIG).is_file():  # a folder of plain experiments has none
        load_settings(grid_dir)
    collection, table, summary, settings, plots = _tables(grid_dir)
    experiments = collection.experiments
    names = labels(settings, table.params)
    shown = summary.records()

    analysis_csv, summary_csv = grid_dir / ANALYSIS_CSV, grid_dir / SUMMARY_CSV
    atomic_write_text(analysis_csv, csv_text(table.frame(), table.columns))
    atomic_write_text(summary_csv, csv_text(summary.frame, summary.columns))
    failures = _failures(experiments)
    search = search_summary(collection, table) if table.search else None
    search_csv, search_plots, section = None, SearchPlots(), ""
    if search is not None:
        search_csv = grid_dir / SEARCH_SUMMARY_CSV
        atomic_write_text(search_csv, csv_text(search.frame(), search.columns))
        search_plots = write_search_plots(grid_dir, search.tasks, search.settings.objective.statistic)
        section = _search_section(grid_dir, search, search_plots)
    report = grid_dir / REPORT_HTML
    atomic_write_text(report, page(grid_dir, manifest, _sections(grid_dir, shown, summary.columns, table.rows,
                                                                  table.columns, failures, plots, section)))
    if console:
        print_console(grid_dir, settings, names, summary.statistics, plots, _report_statistics(grid_dir), search)
    return AnalysisResult(grid_dir, analysis_csv, summary_csv, report, plots, table.rows, shown, table.params,
                          failures, search_csv, search.rows if search is not None else [],
                          [p for task_plots in search_plots.plots.values() for p in task_plots])


def _tables(grid_dir: Path) -> tuple[Collection, Any, Any, list[dict[str, Any]], list[Path]]:
    """What the report is made of: the collected grid, its experiment table and summary (its settings with every
    column) and the learning-curve plots, drawn into ``plots/``."""
    collection = collect(grid_dir)
    experiments = collection.experiments
    table = experiment_table(collection)
    summary = summarize(table, experiments)
    settings = summary.records(all_columns=True)
    plots = write_plots(grid_dir, experiments, table.rows, setting_ids(table, experiments), settings, table.params)
    return collection, table, summary, settings, plots


def live_sections(grid_dir: Path) -> list[str]:
    """The report's sections for a grid that runs, from what its folder holds so far: as ``analyze`` writes them,
    learning curves included, but no CSV written and no search figure (those read the Optuna journal that the
    grid process is writing). ``analyze`` writes the whole report when the grid has ended."""
    collection, table, summary, _, plots = _tables(Path(grid_dir))
    search = search_summary(collection, table) if table.search else None
    section = _search_section(grid_dir, search, SearchPlots()) if search is not None else ""
    return _sections(grid_dir, summary.records(), summary.columns, table.rows, table.columns,
                     _failures(collection.experiments), plots, section)


def _report_statistics(grid_dir: Path) -> list[str]:
    """The grid's ``grid_settings.report_statistics`` (none for a folder written before the setting existed)."""
    config = read_yaml(grid_dir / GRID_CONFIG) or {}
    value = (config.get("grid_settings") or {}).get("report_statistics") or []
    return [str(v) for v in value] if isinstance(value, list) else []

"""``analyze``: a grid folder's CSV tables, plots, HTML report and console table, written into it.

- ``grid_analysis.csv``: one row per experiment (finished or not), the columns of ``load``;
- ``grid_summary.csv``: one row per setting, mean and sample std of every statistic over the finished
  repetitions, ``n``, ``failed`` and ``experiments``; columns that say nothing are left out (a setting
  column constant over the grid or repeating another, a statistic with the same value everywhere);
- ``plots/<Problem>.png``: learning curves, mean ± std over repetitions, one line per setting;
- ``report.html``: all of the above on one self-contained page.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.files import atomic_write_text
from miprometheus.layout import ANALYSIS_CSV, GRID_CONFIG, REPORT_HTML, SUMMARY_CSV
from miprometheus.workers.grid.analysis.collect import CollectedExperiment, collect, is_number, read_yaml
from miprometheus.workers.grid.analysis.plots import main_statistic, write_plots
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


def _mean_pm_std(row: dict[str, Any], column: str) -> str:
    mean, std = row.get(f"{column}_mean"), row.get(f"{column}_std")
    if not is_number(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if is_number(std) else f"{mean:.4g}"


def _html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
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


def _report(grid_dir: Path, manifest: Manifest, summary: list[dict[str, Any]], summary_columns: list[str],
            rows: list[dict[str, Any]], columns: list[str], failures: list[dict[str, Any]], plots: list[Path]) -> str:
    grid_file = read_yaml(grid_dir / GRID_CONFIG) if (grid_dir / GRID_CONFIG).is_file() else None
    description = grid_file.get("description") if isinstance(grid_file, dict) else None
    name = html.escape(grid_dir.name)
    status = ", ".join(f"{count} {state}" for state, count in sorted(manifest.counts().items()))
    meta = [f"{len(rows)} experiments: {html.escape(status)}"]
    if manifest.info.get("grid_file"):
        meta.append(f"grid file: <code>{html.escape(str(manifest.info['grid_file']))}</code>")
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


def print_console(grid_dir: Path, summary: list[dict[str, Any]], names: list[str], statistics: list[str],
                   plots: list[Path], extra: list[str] | None = None) -> None:
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
    for plot in plots:
        console.print(f"plot: {plot}", soft_wrap=True, highlight=False)


def analyze(grid_dir: Path, console: bool = True) -> AnalysisResult:
    """Analyse a grid folder: write its analysis and summary CSVs, learning-curve plots and HTML report."""
    grid_dir = Path(grid_dir)
    manifest = Manifest.load(grid_dir)  # a folder that is no grid is a ConfigError before anything is written
    collection = collect(grid_dir)
    experiments = collection.experiments
    table = experiment_table(collection)
    summary = summarize(table, experiments)
    settings = summary.records(all_columns=True)
    names = labels(settings, table.params)
    shown = summary.records()

    analysis_csv, summary_csv = grid_dir / ANALYSIS_CSV, grid_dir / SUMMARY_CSV
    atomic_write_text(analysis_csv, csv_text(table.frame(), table.columns))
    atomic_write_text(summary_csv, csv_text(summary.frame, summary.columns))
    plots = write_plots(grid_dir, experiments, table.rows, setting_ids(table, experiments), settings, table.params)
    failures = _failures(experiments)
    report = grid_dir / REPORT_HTML
    atomic_write_text(report, _report(grid_dir, manifest, shown, summary.columns, table.rows, table.columns,
                                      failures, plots))
    if console:
        print_console(grid_dir, settings, names, summary.statistics, plots, _report_statistics(grid_dir))
    return AnalysisResult(grid_dir, analysis_csv, summary_csv, report, plots, table.rows, shown, table.params,
                          failures)


def _report_statistics(grid_dir: Path) -> list[str]:
    """The grid's ``grid_settings.report_statistics`` (none for a folder written before the setting existed)."""
    config = read_yaml(grid_dir / GRID_CONFIG) or {}
    value = (config.get("grid_settings") or {}).get("report_statistics") or []
    return [str(v) for v in value] if isinstance(value, list) else []

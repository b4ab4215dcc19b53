"""``mip grid status``: a grid's status on the console — one table, JSON, or a table refreshed until the grid ends.

The table is the one the grid process shows on its own terminal; the reading is ``status.py``'s.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any

from miprometheus.workers.grid.status import GridStatus, State, StatusReader, cells, columns, summary_lines

#: the default refresh of ``--watch``, in seconds
WATCH_SECONDS = 2.0  # mip grid status --watch: as cli.WATCH_SECONDS
#: a grid process found gone is looked for again after this long before a watch ends: ``mip grid run`` lets
#: the lock go between its training and its tests
RECHECK_SECONDS = 1.0

_STYLES = {State.RUNNING: "green", State.FAILED: "red", State.INTERRUPTED: "bold yellow", State.PRUNED: "magenta",
           State.QUEUED: "dim"}


def table(status: GridStatus) -> Any:
    """The status as a rich renderable: the experiments' table, then the summary lines."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    shown = columns(status)
    title = f"grid {status.folder.name}" + (f" — {status.phase}ing" if status.running else "")
    grid_table = Table(title=escape(title), title_justify="left")
    for column in shown:
        grid_table.add_column(column, justify="right" if column in ("attempts", "progress", "time") else "left",
                              overflow="fold", no_wrap=column in ("experiment", "state"))
    for row in status.experiments:
        text = cells(row)
        style = _STYLES.get(row.state, "")
        grid_table.add_row(*(Text(text[c], style=style if c == "state" else "") for c in shown))
    lines = [Text(line) for line in summary_lines(status)]
    return Group(grid_table, *lines)


def to_json(status: GridStatus) -> str:
    """The status as one line of JSON (for scripts): every field of GridStatus, the estimates included."""
    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Path):
            return str(value)
        raise TypeError(type(value).__name__)

    data = asdict(status)
    data["finished"] = status.finished
    return json.dumps(data, default=plain)


def show(folder: Path, watch: float | None = None, as_json: bool = False, console: Any = None) -> None:
    """Print a grid folder's status; with ``watch`` (seconds), again and again until the grid ends or Ctrl-C.

    A folder that is no grid, or a damaged one, is ConfigError (exit 2) before anything is printed.
    """
    from rich.console import Console

    reader = StatusReader(Path(folder))
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=160)  # a pipe or a log: no wrapping
    status = reader.read()
    if as_json:
        _print_json(status)
    if watch is None or not status.running:
        if not as_json:
            console.print(table(status))
        return
    try:
        if as_json:
            while status.running:
                time.sleep(watch)
                status = _read_until_gone(reader)
                _print_json(status)
            return
        from rich.live import Live

        with Live(table(status), console=console, auto_refresh=False) as live:
            while status.running:
                time.sleep(watch)
                status = _read_until_gone(reader)
                live.update(table(status), refresh=True)
    except KeyboardInterrupt:  # Ctrl-C ends the watch, not the grid: not an error
        pass


def _read_until_gone(reader: StatusReader) -> GridStatus:
    """The status now; one that finds no grid process is read again a moment later before it is believed."""
    status = reader.read()
    if not status.running:
        time.sleep(RECHECK_SECONDS)
        status = reader.read()
    return status


def _print_json(status: GridStatus) -> None:
    print(to_json(status), flush=True)

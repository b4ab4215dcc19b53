"""``report.html`` while the grid runs: the grid's status above the report's sections, reloaded by the browser.

The grid process writes it (``GridRunner``), atomically, so a browser never reads half a page:

- the status (``status.py``: the table of ``mip grid status``, the progress, the time left) when the grid
  starts, after each experiment ends and every ``STATUS_SECONDS``: cheap, the manifest and the ends of CSVs;
- the report's sections (summary, failures, learning curves: ``report.live_sections``) drawn again in a
  thread every ``ANALYSIS_SECONDS``, so the grid never waits for pandas or matplotlib; the pages written in
  between reuse the last ones drawn;
- with ``<meta http-equiv="refresh">`` while the grid runs. The grid process's last page has none, unless
  more follows in the same command (``mip grid run``: the tests, then ``mip grid analyze``, which writes the
  final report). A page its grid process stopped rewriting (``kill -9``) says so once it is old.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from pathlib import Path
from typing import Any

from miprometheus.files import atomic_write_text
from miprometheus.layout import REPORT_HTML
from miprometheus.workers.commands import shell_line
from miprometheus.workers.grid.analysis.report import html_table, live_sections, page
from miprometheus.workers.grid.status import GridStatus, StatusReader, cells, columns, summary_lines

#: how often the browser reloads the page while the grid runs
REFRESH_SECONDS = 10
#: how often the grid process writes the status again (besides when an experiment ends)
STATUS_SECONDS = 10
#: how often the tables and learning curves are drawn again, in a thread
ANALYSIS_SECONDS = 60
#: a page older than this (by the browser's clock) was left by a grid process that no longer writes it
STALE_SECONDS = 3 * STATUS_SECONDS + REFRESH_SECONDS


def status_section(status: GridStatus) -> str:
    """The status as HTML: the table of ``mip grid status`` and its summary lines."""
    shown = columns(status)
    rows = [{**cells(row), "status": f"live-{row.state}"} for row in status.experiments]  # "status": the row's class
    lines = "<br>".join(html.escape(line) for line in summary_lines(status))
    command = shell_line(["grid", "status", status.folder])
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.read_at))
    parts = ["<h2>Status</h2>", f"<p class='meta'>{lines}</p>",
             f"<div class='scroll'>{html_table(rows, shown)}</div>"]
    if status.running:
        parts.append(f"<p class='meta'>Written by the grid process at {written}; the page reloads every "
                     f"{REFRESH_SECONDS} s until the grid ends.</p>"
                     f"<p id='stale' class='stale' hidden>This page has not been rewritten since {written}: the "
                     f"grid process may have been killed. <code>{html.escape(command)}</code> tells.</p>"
                     f"<script>if (Date.now() / 1000 - {status.read_at:.0f} > {STALE_SECONDS}) "
                     "document.getElementById('stale').hidden = false;</script>")
    return "\n".join(parts)


class LiveReport:
    """Keeps ``report.html`` current while a grid process runs (see the module docstring); never raises:
    a page that cannot be written is logged once and the grid goes on."""

    def __init__(self, folder: Path, logger: logging.Logger, final: bool = True) -> None:
        self.folder = Path(folder)
        self.logger = logger
        self.final = final  # whether this process's last page is the grid's last (no refresh)
        self.reader: StatusReader | None = None
        self._sections: list[str] = []  # the report's sections last drawn
        self._drawn_at = 0.0  # when the last drawing started (0: never)
        self._written_at = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one page written at a time (the thread's and the grid's)
        self._failed: set[str] = set()
        self._closed = False  # the last page is written: a drawing that ends later writes no more

    def start(self) -> None:
        """Write the first page (the status alone) as the grid starts."""
        self._drawn_at = time.monotonic()  # the first drawing waits ANALYSIS_SECONDS: short grids never pay it
        self._write(running=True)

    def tick(self, changed: bool = False) -> None:
        """From the grid's loop: write the page when an experiment ended (``changed``) or it is due, and start
        drawing the sections again when that is due."""
        now = time.monotonic()
        if now - self._drawn_at >= ANALYSIS_SECONDS and (self._thread is None or not self._thread.is_alive()):
            self._drawn_at = now
            self._thread = threading.Thread(target=self._draw, name="live-report", daemon=True)
            self._thread.start()
        if changed or now - self._written_at >= STATUS_SECONDS:
            self._write(running=True)

    def close(self, interrupted: bool = False) -> None:
        """The grid process's last page: the sections drawn once more (when they were drawn at all and the run
        was not interrupted), and no refresh when nothing follows in this command."""
        if self._thread is not None and not interrupted:  # stopped: no waiting for a drawing (it writes nothing)
            self._thread.join()
            self._draw(write=False)
        self._write(running=not (self.final or interrupted), last=True)

    def _draw(self, write: bool = True) -> None:
        try:
            self._sections = live_sections(self.folder)
        except Exception as exc:  # a report that fails must not stop the grid (and is written as it can be)
            self._warn("its tables and learning curves", exc)
            return
        if write:
            self._write(running=True)

    def _write(self, running: bool, last: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = last
            try:
                if self.reader is None:
                    self.reader = StatusReader(self.folder)
                status = self.reader.read(running=running)
                sections = [status_section(status), *self._sections]
                if not self._sections:
                    sections.append("<p class='meta'>The tables and learning curves are drawn after "
                                    f"{ANALYSIS_SECONDS} s, and by <code>mip grid analyze</code>.</p>")
                text = page(self.folder, self.reader.manifest, sections,
                            refresh=REFRESH_SECONDS if running else None)
                atomic_write_text(self.folder / REPORT_HTML, text)
                self._written_at = time.monotonic()
            except Exception as exc:
                self._warn("the page", exc)

    def _warn(self, what: str, exc: Any) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message not in self._failed:
            self._failed.add(message)
            self.logger.warning("live report %s: %s could not be written: %s", self.folder / REPORT_HTML, what,
                                message)

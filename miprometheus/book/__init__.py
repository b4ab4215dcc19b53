"""The results book: every table of the zoo's measured results, rendered from committed result files.

``mip book`` renders ``docs/results/*.md`` from the templates in ``docs/book/`` (prose and directives) and the
compact result files in ``docs/results/data/`` (:mod:`.store`), in seconds and byte for byte;
``mip book --rerun CHAPTER`` runs the chapter's grids (hours) and replaces their result files;
``mip book --import GRID_DIR --entry ID`` takes the results of a grid run by hand (or resumed after a cut);
``mip book --check`` re-runs the drift check's slice and compares it with the stored figures (:mod:`.check`).
Nothing here is imported by ``import miprometheus``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from miprometheus.book.spec import Book, BookError, Entry, expand, load_book


def import_results(book: Book, entry_id: str, grid_dir: Path) -> Path:
    """Make a finished grid folder the committed results of an entry that names a grid."""
    from miprometheus.book.store import import_grid

    entry = book.entry(entry_id)
    if entry.grid is None:
        raise BookError(f"entry {entry_id} is written by a command ({entry.command}), not by a grid")
    return import_grid(book, entry, grid_dir)


def run_entry(book: Book, entry: Entry, runs_dir: Path, log: Callable[[str], Any] = print) -> Path:
    """Measure one entry again: run its grid (train, test, analyse) or its command, and store the results."""
    where = f"entry {entry.id}"
    if entry.command is not None:
        data = book.entry_data(entry.id)
        data.mkdir(parents=True, exist_ok=True)
        argv = [expand(part, where).replace("{data}", str(data)) for part in shlex.split(entry.command)]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        log(f"{entry.id}: {' '.join(argv)}")
        completed = subprocess.run(argv, cwd=book.root)
        if completed.returncode != 0:
            raise BookError(f"{where}: {entry.command} exited with {completed.returncode}")
        return data
    from miprometheus.workers.grid import runner
    from miprometheus.workers.grid.analysis import analyze

    overrides = [expand(o, where) for o in entry.overrides]
    grid_file = book.root / str(entry.grid)
    log(f"{entry.id}: mip grid run {entry.grid} {' '.join(overrides)} --expdir {runs_dir}")
    manifest = runner.train_grid(grid_file, overrides, runs_dir, f"book_{entry.id}", progress=False)
    settings = runner.load_settings(manifest.folder)
    if settings.test:
        runner.test_grid(manifest.folder, progress=False)
    analyze(manifest.folder, console=False)
    log(f"{entry.id}: grid folder {manifest.folder} (mip book --import {manifest.folder} --entry {entry.id} "
        "takes it again after a cut and `mip grid run --resume`)")
    return import_results(book, entry.id, manifest.folder)


def rerun(book: Book, name: str, runs_dir: Path, log: Callable[[str], Any] = print) -> list[Path]:
    """Measure a whole chapter (its grids and commands, in order) or one entry again, then render the book."""
    from miprometheus.book import render

    if any(chapter.name == name for chapter in book.chapters):
        entries = book.chapter(name).entries
    elif any(entry.id == name for chapter in book.chapters for entry in chapter.entries):
        entries = [book.entry(name)]
    else:
        book.chapter(name)  # the error names the chapters
        entries = []
    for entry in entries:
        run_entry(book, entry, runs_dir, log)
    return render.write(book)


__all__ = ["Book", "BookError", "import_results", "load_book", "rerun", "run_entry"]

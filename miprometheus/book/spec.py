"""The book file (``docs/book/book.yaml``): its chapters, their entries and the drift check's slice.

Every path in it is relative to the repository root (the folder holding ``docs/``); values may name
environment variables as ``${NAME}`` (the folder of data a machine keeps elsewhere, ``${MIP_MNIST_DIR}``),
expanded only when the entry runs, so a book renders on any machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.errors import ConfigError

#: where ``mip book`` looks for the book file, from the repository root
BOOK_FILE = Path("docs") / "book" / "book.yaml"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BookError(ConfigError):
    """The book file, a template or a committed result file is wrong or missing: exit code 2."""


@dataclass
class Entry:
    """One result of a chapter: a grid's results (``grid``) or the files a command writes (``command``)."""

    id: str
    chapter: str
    grid: str | None = None  # a grid file, relative to the root
    overrides: list[str] = field(default_factory=list)  # key=value for `mip grid run`
    command: str | None = None  # a shell-free command line; {data} is the entry's data folder
    statistics: list[str] = field(default_factory=list)  # columns of the tables (val_acc, test[length_20]_acc, ...)
    curves: list[str] = field(default_factory=list)  # validation statistics drawn against the episodes
    phase: str | None = None  # only the rows of this phase (reevaluation: a search's re-trained winners)
    published: dict[str, str] = field(default_factory=dict)  # task -> the paper's figure, in words


@dataclass
class Chapter:
    name: str
    title: str
    template: str  # relative to the root
    entries: list[Entry]


@dataclass
class CheckRun:
    """A short fixed-seed run of a shipped config whose figures the drift check compares with stored values."""

    name: str
    config: str
    overrides: list[str]
    tolerances: dict[str, float]  # statistic column (val_loss, test_acc, ...) -> the largest accepted |difference|
    requires: list[str] = field(default_factory=list)  # environment variables it needs (else it is skipped)


@dataclass
class Book:
    root: Path
    file: Path
    output: Path  # the rendered chapters' folder
    data: Path  # the committed result files' folder
    chapters: list[Chapter]
    check: list[CheckRun]
    check_threads: int = 1
    check_parallel: int = 2

    def chapter(self, name: str) -> Chapter:
        for chapter in self.chapters:
            if chapter.name == name:
                return chapter
        raise BookError(f"the book has no chapter {name!r}; its chapters: {', '.join(c.name for c in self.chapters)}")

    def entry(self, identifier: str) -> Entry:
        for chapter in self.chapters:
            for entry in chapter.entries:
                if entry.id == identifier:
                    return entry
        raise BookError(f"the book has no entry {identifier!r}; its entries: "
                        f"{', '.join(e.id for c in self.chapters for e in c.entries)}")

    def entry_data(self, identifier: str) -> Path:
        """The folder of an entry's committed result files."""
        return self.data / identifier

    @property
    def check_data(self) -> Path:
        return self.data / "check"


def expand(text: str, what: str) -> str:
    """``${NAME}`` replaced by the environment variable; an unset one is a BookError naming it and ``what``."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise BookError(f"{what} needs the environment variable {name} (e.g. export {name}=/path/to/it)")
        return os.environ[name]

    return _ENV.sub(value, text)


def needed_variables(texts: list[str]) -> list[str]:
    """The environment variables ``${NAME}`` that ``texts`` name, in order, once each."""
    names: list[str] = []
    for text in texts:
        names += [name for name in _ENV.findall(text) if name not in names]
    return names


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BookError(f"{where} must be a list of strings, got {value!r}")
    return list(value)


def _mapping(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BookError(f"{where} must be a mapping, got {value!r}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BookError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(keys))}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BookError(f"{where} must be a name of letters, digits, '_', '.' or '-', got {value!r}")
    return value


def _entry(raw: Any, chapter: str, where: str) -> Entry:
    raw = _mapping(raw, where, {"id", "grid", "overrides", "command", "statistics", "curves", "phase", "published"})
    identifier = _name(raw.get("id"), f"{where}.id")
    if (raw.get("grid") is None) == (raw.get("command") is None):
        raise BookError(f"{where} ({identifier}) needs exactly one of grid (a grid file) or command")
    published = raw.get("published") or {}
    if not isinstance(published, dict):
        raise BookError(f"{where}.published must map tasks to the published figure, got {published!r}")
    return Entry(identifier, chapter, grid=raw.get("grid"),
                 overrides=_strings(raw.get("overrides"), f"{where}.overrides"),
                 command=raw.get("command"), statistics=_strings(raw.get("statistics"), f"{where}.statistics"),
                 curves=_strings(raw.get("curves"), f"{where}.curves"), phase=raw.get("phase"),
                 published={str(k): str(v) for k, v in published.items()})


def _check_run(raw: Any, where: str) -> CheckRun:
    raw = _mapping(raw, where, {"name", "config", "overrides", "figures"})
    name = _name(raw.get("name"), f"{where}.name")
    if not isinstance(raw.get("config"), str):
        raise BookError(f"{where} ({name}) needs config: a shipped config file")
    figures = raw.get("figures")
    if not isinstance(figures, dict) or not figures:
        raise BookError(f"{where} ({name}) needs figures: statistic -> tolerance (the largest accepted difference)")
    tolerances: dict[str, float] = {}
    for statistic, tolerance in figures.items():
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise BookError(f"{where}.figures.{statistic} must be a tolerance >= 0, got {tolerance!r}")
        tolerances[str(statistic)] = float(tolerance)
    overrides = _strings(raw.get("overrides"), f"{where}.overrides")
    return CheckRun(name, raw["config"], overrides, tolerances, needed_variables([raw["config"], *overrides]))


def load_book(file: Path | str | None = None, root: Path | str | None = None) -> Book:
    """Read and validate the book file (default: ``<root>/docs/book/book.yaml``, root = the current folder)."""
    from miprometheus.config.yaml_loader import read_config_text, safe_load

    root = Path(root) if root is not None else Path.cwd()
    file = Path(file) if file is not None else root / BOOK_FILE
    if not file.is_file():
        raise BookError(f"no book file at {file}: run `mip book` from the repository root (or pass --book FILE)")
    if file != root / BOOK_FILE and root == Path.cwd() and file.parent.name == "book":
        root = file.parent.parent.parent  # <root>/docs/book/book.yaml
    try:
        raw = safe_load(read_config_text(file), str(file))  # bounded, YAML 1.2
    except Exception as exc:  # a YAML syntax error: name the file
        raise BookError(f"{file}: not valid YAML: {exc}") from None
    raw = _mapping(raw, str(file), {"output", "data", "chapters", "check"})
    chapters = []
    names: set[str] = set()
    ids: set[str] = set()
    for i, item in enumerate(raw.get("chapters") or []):
        where = f"{file}: chapters[{i}]"
        item = _mapping(item, where, {"name", "title", "template", "entries"})
        name = _name(item.get("name"), f"{where}.name")
        if name in names or name == "index":
            raise BookError(f"{where}: chapter name {name!r} is used twice (or is 'index', the contents' page)")
        names.add(name)
        entries = [_entry(e, name, f"{where}.entries[{j}]") for j, e in enumerate(item.get("entries") or [])]
        for entry in entries:
            if entry.id in ids or entry.id == "check":
                raise BookError(f"{where}: entry id {entry.id!r} is used twice (or is 'check', the drift check's)")
            ids.add(entry.id)
        template = item.get("template") or f"docs/book/{name}.md"
        chapters.append(Chapter(name, str(item.get("title") or name), template, entries))
    check = _mapping(raw.get("check") or {}, f"{file}: check", {"threads", "parallel", "runs"})
    runs = [_check_run(r, f"{file}: check.runs[{i}]") for i, r in enumerate(check.get("runs") or [])]
    if len({r.name for r in runs}) != len(runs):
        raise BookError(f"{file}: check.runs: two runs have the same name")
    return Book(root=root, file=file, output=root / str(raw.get("output") or "docs/results"),
                data=root / str(raw.get("data") or "docs/results/data"), chapters=chapters, check=runs,
                check_threads=int(check.get("threads") or 1), check_parallel=int(check.get("parallel") or 2))


__all__ = ["BOOK_FILE", "Book", "BookError", "Chapter", "CheckRun", "Entry", "expand", "load_book",
           "needed_variables"]

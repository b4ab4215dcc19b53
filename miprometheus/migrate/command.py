"""``mip migrate``: original configs and grid files in, this project's files, their reports and a summary out; and
the original's entry points (``mip-online-trainer --c a.yaml,b.yaml`` ...), which read their configs the same way."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miprometheus.config.loader import DEFAULTS_KEY
from miprometheus.config.yaml_loader import dump_yaml, load_yaml
from miprometheus.errors import EXIT_FAILED, EXIT_OK, ConfigError, DataError, MipError
from miprometheus.migrate.convert import (
    Converted,
    ConvertedGrid,
    convert_config,
    convert_grid,
    declared_parameters,
    display,
)
from miprometheus.migrate.original import load_original, not_original, read_original
from miprometheus.migrate.report import Report, Status, summary
from miprometheus.migrate.tables import GRID_SECTIONS

REPORT_FILE = "migration_report.md"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class Planned:
    """One input and what it becomes: the converted config (or grid and its tasks) and where it goes."""

    source: Path
    output: Path
    report: Report
    converted: Converted | ConvertedGrid | None  # None: a default config, not converted on its own


def inputs(paths: list[str | Path]) -> list[Path]:
    """The files named: a folder stands for its YAML files (recursively, in name order)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{item}: no such file or folder")
    if not found:
        raise ConfigError(f"no YAML file in {', '.join(str(p) for p in paths)}")
    return list(dict.fromkeys(p.resolve() for p in found))  # a file named twice is converted once


def output_path(source: Path, root: Path, out: Path) -> Path:
    """Where a converted file goes: its path under ``root`` kept, else its name."""
    try:
        return out / source.relative_to(root)
    except ValueError:
        return out / source.name


def is_grid(tree: dict[str, Any]) -> bool:
    return any(key in tree for key in GRID_SECTIONS)


def plan(source: Path, root: Path, output: Path, trainer: str | None) -> Planned:
    """Read and convert one input (ConfigError when it is not an original config, or its defaults are broken)."""
    first = read_original(source)
    report = Report(display(source, root), display(output, Path.cwd().resolve()))
    if is_grid(first.tree):
        return Planned(source, output, report, convert_grid(first, trainer, root, output, report))
    original = load_original([source], root)
    if "model" not in original.tree or not any(s in original.tree for s in ("training", "testing")):
        lacks = "a model section" if "model" not in original.tree else "a training or testing section"
        report.partial = (f"it lacks {lacks}: a default config, merged into the configs that list it in their "
                          "default_configs")
        report.files = [display(path, root) for path in original.files]
        return Planned(source, output, report, None)
    return Planned(source, output, report, convert_config(original, trainer, root, output, report))


def header(report: Report, what: str) -> str:
    lines = [f"Converted by `mip migrate` from the original MI-Prometheus {what} {report.source}",
             *report.lines(tasks_in_full=False)]
    return "".join(f"# {line}\n" for line in lines)


def with_description(tree: dict[str, Any], report: Report, what: str) -> dict[str, Any]:
    trainer = f" (the {report.trainer} trainer's defaults)" if report.trainer else ""
    return {"description": f"converted by mip migrate from the original MI-Prometheus {what} "
                           f"{Path(report.source.split(' ')[0]).name}{trainer}", **tree}


def download_overrides(tree: dict[str, Any]) -> list[str]:
    """``<split>.problem.download=false`` for every problem that could download: a check never fetches data."""
    overrides = []
    for section in ("training", "validation", "testing"):
        name = (tree.get(section) or {}).get("problem", {}).get("name") if isinstance(tree.get(section), dict) else None
        if isinstance(name, str) and "download" in declared_parameters("problems", name):
            overrides.append(f"{section}.problem.download=false")
    return overrides


def check(path: Path, tree: dict[str, Any]) -> tuple[Status | None, str]:
    """``mip check`` of a written config, downloads off: (None, what it says) when it passes, else the status the
    failure gives (missing data files: need data) and the first line of its message."""
    from miprometheus.workers import runs

    try:
        _, lines, _ = runs.check([str(path)], download_overrides(tree))
    except DataError as exc:
        return Status.NEED_DATA, str(exc).splitlines()[0]
    except MipError as exc:
        return Status.CANNOT_CONVERT, str(exc).replace("\n", " ")[:600]
    return None, "passed: " + "; ".join(lines)


def _write(path: Path, text: str) -> None:
    from miprometheus.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _config_text(converted: Converted, what: str) -> str:
    return header(converted.report, what) + dump_yaml(with_description(converted.tree, converted.report, what))


def _settle(report: Report, path: Path, tree: dict[str, Any]) -> None:
    status, said = check(path, tree)
    report.check = said
    if report.blocked:
        report.status = Status.CANNOT_CONVERT
    elif status is not None:
        report.status = status


def migrate(paths: list[str | Path], out: Path, trainer: str | None = None, root: Path | None = None,
            force: bool = False, echo: Callable[[str], Any] = print) -> int:
    """Convert original configs and grid files into ``out``; print each report and the summary.

    Everything is read and converted before anything is written; an output that exists is replaced only with
    ``force``. Returns EXIT_OK when every config converted or only needs its data, EXIT_FAILED when one cannot
    be converted."""
    root = (root or Path.cwd()).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"--root {root} is not a folder: name the directory the original ran in")
    out = out.expanduser().resolve()
    planned = [plan(source, root, output_path(source, root, out), trainer) for source in inputs(paths)]
    writes: dict[Path, str] = {}
    for item in planned:
        for path in _outputs(item):
            if path in writes:
                raise ConfigError(f"two inputs would be written to {path}: migrate them into different --out "
                                  "folders (or give --root their common folder)")
            writes[path] = ""
    present = [str(p) for p in writes if p.exists() or p.is_symlink()]
    if (out / REPORT_FILE).exists() and not force:
        present.append(str(out / REPORT_FILE))
    if present and not force:
        raise ConfigError(f"--out {out} already holds {', '.join(present[:5])}"
                          f"{f' and {len(present) - 5} more' if len(present) > 5 else ''}: name another folder, or "
                          "add --force to replace them")
    for item in planned:
        _write_checked(item)
    reports = [item.report for item in planned]
    for report in reports:
        echo("\n".join(report.lines()))
    line = summary(reports)
    echo(line)
    _write(out / REPORT_FILE, "# mip migrate\n\n```\n" + "\n\n".join("\n".join(r.lines()) for r in reports)
           + f"\n```\n\n{line}\n")
    configs = [task for report in reports if not report.partial for task in (report.tasks or [report])]
    return EXIT_FAILED if any(r.status is Status.CANNOT_CONVERT for r in configs) else EXIT_OK


def _outputs(item: Planned) -> list[Path]:
    converted = item.converted
    if converted is None:
        return []
    if isinstance(converted, ConvertedGrid):
        folder = item.output.parent
        return [item.output, *(folder / name for name in converted.tasks),
                *(folder / Path(name).parent / extra for name, task in converted.tasks.items()
                  for extra in task.extra_files)]
    return [item.output, *(item.output.parent / extra for extra in converted.extra_files)]


def _write_checked(item: Planned) -> None:
    """Write a converted file (and a grid's task configs), run mip check on each config, write them again with the
    check's verdict in their header."""
    converted = item.converted
    if converted is None:
        return
    if isinstance(converted, ConvertedGrid):
        folder = item.output.parent
        for name, task in converted.tasks.items():
            _write_config(folder / name, task, "grid task")
        statuses = [task.report.status for task in converted.tasks.values()]
        report = converted.report
        report.status = max(statuses, key=list(Status).index) if statuses else Status.CANNOT_CONVERT
        if report.blocked:
            report.status = Status.CANNOT_CONVERT
        from miprometheus.workers.grid.spec import load_grid

        _write(item.output, header(report, "grid file") + dump_yaml(with_description(converted.tree, report,
                                                                                     "grid file")))
        try:
            load_grid(item.output, validate_tasks=False)
            report.check = "the grid file passes (each task config is checked on its own)"
        except MipError as exc:
            report.check = str(exc).replace("\n", " ")[:600]
            report.status = Status.CANNOT_CONVERT
        _write(item.output, header(report, "grid file") + dump_yaml(with_description(converted.tree, report,
                                                                                     "grid file")))
        return
    _write_config(item.output, converted, "config")


def _write_config(path: Path, converted: Converted, what: str) -> None:
    for name, text in converted.extra_files.items():
        _write(path.parent / name, text)
    _write(path, _config_text(converted, what))
    _settle(converted.report, path, converted.tree)
    _write(path, _config_text(converted, what))


# --- the original's entry points ------------------------------------------------------------------------------
def is_original_file(path: str) -> bool:
    """Whether a file given to an original entry point is in the original's format (else this project's)."""
    try:
        tree, lines = load_yaml(Path(path).expanduser())
    except ConfigError:
        return True  # read again as an original, which names the problem
    if not isinstance(tree, dict):
        return True
    defaults = tree.get(DEFAULTS_KEY)
    return not isinstance(defaults, list) and not_original(tree, lines, Path(path)) is None


def run_original(command: list[str], configs: list[str], rest: list[str], trainer: str | None,
                 main: Callable[[list[str]], int], prog: str | None = None) -> int:
    """What an original entry point does with ``--c CONFIGS``: read them as the original did (the first listed
    wins); an original config is converted as ``mip migrate`` converts it (into a temporary folder) and run by
    ``mip COMMAND``; this project's configs are passed on in the order that makes the first listed win."""
    prog = prog or Path(sys.argv[0]).name
    if not configs:
        return main([*command, *rest])
    try:
        originals = [is_original_file(config) for config in configs]
        if not any(originals):
            return main([*command, *reversed(configs), *rest])
        if not all(originals):
            ours = [c for c, original in zip(configs, originals, strict=True) if not original]
            raise ConfigError(f"{', '.join(ours)}: in this project's format, listed with original configs; convert "
                              "the original ones with mip migrate and list them together with mip train")
        with tempfile.TemporaryDirectory(prefix="mip-original-") as folder:
            target = _convert_for_entry_point(command, configs, trainer, Path(folder), prog)
            return main([*command, str(target), *rest])
    except MipError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _convert_for_entry_point(command: list[str], configs: list[str], trainer: str | None, folder: Path,
                             prog: str) -> Path:
    root = Path.cwd()
    first = read_original(Path(configs[0]).expanduser())
    if command[0] == "grid":
        if len(configs) != 1:
            raise ConfigError(f"{prog} takes one grid file, not {len(configs)}")
        output = folder / Path(configs[0]).name
        report = Report(configs[0], str(output))
        grid = convert_grid(first, trainer, root, output, report)
        for name, task in grid.tasks.items():
            for extra, text in task.extra_files.items():
                _write((output.parent / name).parent / extra, text)
            _write(output.parent / name, _config_text(task, "grid task"))
        _write(output, dump_yaml(with_description(grid.tree, report, "grid file")))
        reports = report.tasks
    else:
        output = folder / Path(configs[0]).name
        report = Report(", ".join(configs), str(output))
        converted = convert_config(load_original([Path(c).expanduser() for c in configs], root), trainer, root,
                                   output, report)
        for extra, text in converted.extra_files.items():
            _write(folder / extra, text)
        _write(output, _config_text(converted, "config"))
        reports = [report]
    blocked = [(key, why) for r in reports for key, why, blocking in r.no_equivalent if blocking]
    if blocked:
        raise ConfigError(f"{', '.join(configs)}: {blocked[0][0]}: {blocked[0][1]}"
                          f"{f' (and {len(blocked) - 1} more)' if len(blocked) > 1 else ''}; mip migrate writes the "
                          "nearest config here and its whole report")
    changes = sum(len(r.renamed) + len(r.converted) + len(r.defaults) + len(r.dropped) for r in reports)
    print(f"{prog}: read {', '.join(configs)} as the original did (the first listed wins) and converted them "
          f"({changes} keys renamed, converted, defaulted or dropped; mip migrate shows the file and its report)",
          file=sys.stderr)
    return output

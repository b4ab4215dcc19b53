"""Reading config files as the original MI-Prometheus read them.

- ``default_configs`` is one string of comma-separated paths (spaces ignored), relative to the directory the
  command ran in (``root``: the original repository's root); a path found only beside the file that lists it is
  taken from there.
- Files are read depth first, each file before its defaults and its defaults in their order; a file listed again
  later is skipped (the original read a file once). The **first** file read wins a key that several set: the
  original loaded them in reverse order, each overwriting the ones before. So ``--c a.yaml,b.yaml`` gives
  ``a.yaml`` over its defaults over ``b.yaml`` over its defaults.
- Unlike the original, a cycle (a file among its own defaults) and a missing default are errors that name them
  (the original skipped the one and stopped with ``exit(-1)`` at the other).

Every file is read by the project's bounded YAML reader (``config.yaml_loader.load_yaml``), within its limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.config.loader import (
    DEFAULTS_KEY,
    MAX_DEFAULTS_DEPTH,
    MAX_FILES,
    Origin,
    deep_merge,
)
from miprometheus.config.yaml_loader import Lines, load_yaml, shown
from miprometheus.errors import ConfigError
from miprometheus.migrate.tables import CONFIG_SECTIONS, EARLY_SECTIONS, GRID_SECTIONS, THIS_PROJECT_KEYS


@dataclass
class OriginalFile:
    """One file as read: its mapping (``default_configs`` removed), the line of each key, its defaults."""

    path: Path
    tree: dict[str, Any]
    lines: Lines
    defaults: list[Path] = field(default_factory=list)


@dataclass
class OriginalConfig:
    """Files merged as the original merged them: ``files`` in reading order, the first one winning."""

    tree: dict[str, Any]
    origins: dict[str, Origin]
    files: list[Path]

    def where(self, dotted: str) -> str:
        """``file:line`` of a key (or of its nearest parent that has one), for messages."""
        parts = dotted.split(".")
        while parts:
            found = self.origins.get(".".join(parts))
            if found is not None:
                return str(found)
            parts.pop()
        return str(self.files[0]) if self.files else ""


def default_names(value: Any, path: Path, lines: Lines) -> list[str]:
    """The paths of a ``default_configs`` value: the original split one string at its commas."""
    if value is None:
        return []
    if isinstance(value, str):
        return [name for name in value.replace(" ", "").split(",") if name]
    kind = "a YAML list (this project's format)" if isinstance(value, list) else f"a {type(value).__name__}"
    raise ConfigError(f"{path}:{lines.get((DEFAULTS_KEY,), 1)}: is not an original MI-Prometheus config: its "
                      f"default_configs is {kind}; the original's is one string of comma-separated paths")


def not_original(tree: Any, lines: Lines, path: Path) -> str | None:
    """Why a file read as YAML is not a config (or grid file) of the original's last release, or None."""
    if not isinstance(tree, dict):
        what = "nothing (an empty file)" if tree is None else f"a {type(tree).__name__}, not a mapping"
        return f"{path}: is not an original MI-Prometheus config: it holds {what}"
    early = [key for key in EARLY_SECTIONS if key in tree]
    if early and not any(key in tree for key in CONFIG_SECTIONS):
        return (f"{path}:{lines.get((early[0],), 1)}: is a config of MI-Prometheus's early versions (sections "
                f"{', '.join(early)}); mip migrate reads the configs of its last release (sections training, "
                "validation, testing, model)")
    if not any(key in tree for key in (*CONFIG_SECTIONS, *GRID_SECTIONS, DEFAULTS_KEY)):
        keys = ", ".join(shown(str(key), 40) for key in list(tree)[:5])
        return (f"{path}: is not an original MI-Prometheus config: none of its keys ({keys}) is a section of the "
                f"original's configs ({', '.join(CONFIG_SECTIONS)}, {DEFAULTS_KEY}) or grid files "
                f"({', '.join(GRID_SECTIONS)})")
    for dotted, what in THIS_PROJECT_KEYS.items():
        node: Any = tree
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            line = lines.get(tuple(dotted.split(".")), 1)
            return (f"{path}:{line}: is not an original MI-Prometheus config: {what} belongs to this project's "
                    "format (mip check reads it as it is)")
    tasks = tree.get("grid_tasks")
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        extra = [key for key in ("name", "after", "search_space") if isinstance(task, dict) and key in task]
        if extra:
            return (f"{path}:{lines.get(('grid_tasks', str(i), extra[0]), 1)}: is not an original MI-Prometheus "
                    f"grid file: grid_tasks[{i}].{extra[0]} belongs to this project's format")
    return None


def read_original(path: Path, listed_in: str = "") -> OriginalFile:
    """One file of the original's format; ConfigError (exit 2) naming it if it is not one."""
    try:
        tree, lines = load_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{listed_in}") from None
    why = not_original(tree, lines, path)
    if why:
        raise ConfigError(why + listed_in)
    defaults = default_names(tree.pop(DEFAULTS_KEY, None), path, lines)
    return OriginalFile(path, tree, lines, [Path(name) for name in defaults])


def locate_default(name: Path, listed_by: OriginalFile, root: Path) -> Path:
    """Where a default the original would have opened lies: relative to ``root``, else beside the listing file."""
    name = name.expanduser()
    candidates = [name] if name.is_absolute() else [root / name, listed_by.path.parent / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    line = listed_by.lines.get((DEFAULTS_KEY,), 1)
    looked = " and ".join(str(c) for c in dict.fromkeys(candidates))
    raise ConfigError(f"{listed_by.path}:{line}: default_configs lists {shown(str(name))}, which is missing "
                      f"(looked for {looked}; --root names the directory the original ran in)")


def read_chain(paths: list[Path], root: Path) -> list[OriginalFile]:
    """The files of a config in the original's reading order: each file, then its defaults, depth first, a file
    read once. A cycle and a missing default are ConfigErrors naming them."""
    order: list[OriginalFile] = []
    seen: set[Path] = set()

    def visit(path: Path, chain: tuple[OriginalFile, ...]) -> None:
        via = f" (listed in default_configs of {' -> '.join(str(f.path) for f in chain)})" if chain else ""
        try:
            resolved = path.resolve()
        except (RuntimeError, OSError) as exc:
            raise ConfigError(f"cannot read config file {shown(str(path))}: {exc}{via}") from None
        if any(f.path == resolved for f in chain):
            start = next(i for i, f in enumerate(chain) if f.path == resolved)
            cycle = " -> ".join(str(f.path) for f in (*chain[start:], chain[start]))
            raise ConfigError(f"default_configs form a cycle: {cycle}")
        if resolved in seen:
            return  # the original skipped a file it had read already ("already parsed - skipping")
        if len(chain) >= MAX_DEFAULTS_DEPTH:
            raise ConfigError(f"{chain[-1].path}: default_configs nest more than {MAX_DEFAULTS_DEPTH} files deep "
                              "(the limit)")
        if len(seen) >= MAX_FILES:
            raise ConfigError(f"{paths[0]}: default_configs make this config read more than {MAX_FILES} files "
                              "(the limit)")
        seen.add(resolved)
        read = read_original(resolved, via)
        order.append(read)
        for name in read.defaults:
            visit(locate_default(name, read, root), (*chain, read))

    for path in paths:
        visit(path, ())
    return order


def merge_first_wins(files: list[OriginalFile]) -> OriginalConfig:
    """Merge files as the original did: in reverse reading order, each over the ones before: the first one wins."""
    tree: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for read in reversed(files):
        own = {".".join(key): Origin(str(read.path), line, read.path.parent) for key, line in read.lines.items()
               if key and key[0] != DEFAULTS_KEY}
        deep_merge(tree, origins, read.tree, own)
    return OriginalConfig(tree, origins, [f.path for f in files])


def load_original(paths: list[Path], root: Path) -> OriginalConfig:
    """Read and merge config files as the original did (``--c a.yaml,b.yaml``: the first listed wins)."""
    if not paths:
        raise ConfigError("no config file given")
    return merge_first_wins(read_chain(paths, root))

"""What ``mip migrate`` did to one file, and the summary over all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    """The outcome of one converted config."""

    CONVERTED = "converted"  # mip check accepts it, and it means what the original's config meant
    NEED_DATA = "need data"  # mip check found everything but the dataset's files
    CANNOT_CONVERT = "cannot convert"  # something it relies on has no equivalent here, or mip check refuses it


@dataclass
class Report:
    """One converted config: what was renamed, converted, written, dropped, and what has no equivalent."""

    source: str
    output: str = ""
    trainer: str = ""
    files: list[str] = field(default_factory=list)  # read in the original's order: the first one wins
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (original key, key here)
    converted: list[tuple[str, str]] = field(default_factory=list)  # (key, what changed and why)
    defaults: list[tuple[str, str]] = field(default_factory=list)  # (key here, the original's default written)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (original key, why)
    no_equivalent: list[tuple[str, str, bool]] = field(default_factory=list)  # (original key, why, blocking)
    notes: list[str] = field(default_factory=list)
    check: str = ""  # what mip check said
    status: Status = Status.CONVERTED
    tasks: list[Report] = field(default_factory=list)  # a grid file's task configs
    partial: str = ""  # why the file is not an experiment of its own (a default config that others list)

    def rename(self, old: str, new: str) -> None:
        if old != new:
            self.renamed.append((old, new))

    def convert(self, key: str, what: str) -> None:
        self.converted.append((key, what))

    def default(self, key: str, what: str) -> None:
        self.defaults.append((key, what))

    def drop(self, key: str, why: str) -> None:
        self.dropped.append((key, why))

    def missing(self, key: str, why: str, blocking: bool = True) -> None:
        self.no_equivalent.append((key, why, blocking))

    @property
    def blocked(self) -> bool:
        """Whether something the original's run relied on has no equivalent here."""
        return any(blocking for _, _, blocking in self.no_equivalent)

    def lines(self, tasks_in_full: bool = True) -> list[str]:
        """The report as text lines (the header of the converted file, the console, migration_report.md); a grid
        file's tasks in full, or one line each (their own files hold the rest)."""
        if self.partial:
            return [f"{self.source}: not converted on its own: {self.partial}"]
        out = [f"{self.source} -> {self.output or '(not written)'}: {self.status.value}"]
        if self.files and len(self.files) > 1:
            out.append("  read in the original's order, the first one winning: " + ", ".join(self.files))
        if self.trainer:
            out.append(f"  trainer defaults: the {self.trainer} trainer's (mip-{self.trainer}-trainer)")
        for old, new in self.renamed:
            out.append(f"  renamed        {old} -> {new}")
        for key, what in self.converted:
            out.append(f"  converted      {key}: {what}")
        for key, what in self.defaults:
            out.append(f"  default        {key}: {what}")
        for key, why in self.dropped:
            out.append(f"  dropped        {key}: {why}")
        for key, why, blocking in self.no_equivalent:
            out.append(f"  {'NO EQUIVALENT' if blocking else 'no equivalent'}  {key}: {why}")
        out += [f"  note           {note}" for note in self.notes]
        if self.check:
            out.append(f"  mip check      {self.check}")
        for task in self.tasks:
            out += ["  " + line for line in (task.lines() if tasks_in_full else task.lines()[:1])]
        return out


def summary(reports: list[Report]) -> str:
    """One line: how many configs (a grid's task configs each counted) converted, need data, cannot convert."""
    configs = [task for report in reports if not report.partial for task in (report.tasks or [report])]
    counts = {status: sum(1 for r in configs if r.status is status) for status in Status}
    grids = sum(1 for report in reports if report.tasks)
    partial = sum(1 for report in reports if report.partial)
    files = (f"{len(reports)} file(s)" + (f", {grids} of them grid files" if grids else "")
             + (f", {partial} of them default configs only" if partial else ""))
    return (f"mip migrate: {files}, {len(configs)} config(s): {counts[Status.CONVERTED]} converted, "
            f"{counts[Status.NEED_DATA]} need data, {counts[Status.CANNOT_CONVERT]} cannot convert")

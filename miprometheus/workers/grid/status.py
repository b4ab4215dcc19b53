"""The state of a grid read from its folder, while its grid process runs or after it stopped (``mip grid status``).

Only reads, and never the grid's lock: ``manifest.json`` (replaced atomically, so always whole), each
experiment's CSVs from their end (a row still being appended is skipped until its line ends),
``run_info.json``, the configs for the limits; whether the grid process lives comes from the grid
folder's lock as :func:`miprometheus.locks.lock_state` sees it. An experiment the manifest marks running
while no grid process holds the lock is *interrupted*: the grid died under it (``kill -9``, a lost node),
and ``mip grid train --resume`` continues it from its last checkpoint.

The time left is an estimate: the finished experiments' mean wall time for those still queued, each
running one's training time so far scaled by what is left of its limits (episodes, epochs), laid out on
``max_concurrent_runs`` slots. A run that ends earlier (``loss_stop``, early stopping, a pruned trial)
makes it shorter.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from miprometheus.layout import RUN_INFO, TRAINING_CONFIG, TRAINING_CSV, VALIDATION_CSV, grid_output_dir
from miprometheus.locks import lock_state
from miprometheus.workers.commands import RESUME_FLAG, shell_line
from miprometheus.workers.grid.analysis.collect import number, read_json, read_yaml
from miprometheus.workers.grid.analysis.tables import MAIN_STATISTICS
from miprometheus.workers.grid.folders import newest_experiment
from miprometheus.workers.grid.manifest import (
    DONE,
    FAILED,
    PENDING,
    PRUNED,
    REEVALUATION,
    RUNNING,
    SEARCH,
    ExperimentRecord,
    Manifest,
)
from miprometheus.workers.grid.spec import GridSettings, load_settings

#: how much of a statistics CSV's end is read for its last row (a row of ~100 statistics is a few KB)
TAIL_BYTES = 64 * 1024
#: how much of a training CSV's beginning is read to find how many episodes its first epoch had
HEAD_BYTES = 1 << 20
#: below this fraction of its limits, a running experiment's pace says too little to project its end
MIN_PROGRESS = 0.02
#: the run_info.json statuses of a training that has ended for good (as the runner reads them)
TRAINED = ("completed", "pruned")


class State(str, Enum):
    """Where an experiment (its training, or its test) stands."""

    QUEUED = "queued"  # not started yet, or waiting to be tried again
    RUNNING = "running"
    DONE = "done"
    PRUNED = "pruned"  # a search trial its pruner stopped: ended early on purpose
    FAILED = "failed"  # for good: bad input, or out of attempts
    INTERRUPTED = "interrupted"  # marked running, but no grid process runs: resuming the grid continues it

    __str__ = str.__str__


@dataclass
class ExperimentStatus:
    """One experiment as the status shows it."""

    id: str
    state: State  # its training's
    attempts: int
    phase: str | None = None  # with a search: "search" (a trial) or "reevaluation"
    trial: int | None = None
    episode: int | None = None  # the last training row's
    epoch: int | None = None
    episode_limit: int | None = None
    epoch_limit: int | None = None
    progress: float | None = None  # 0..1 of its limits (the nearer of the two); None without a limit
    validation: dict[str, float] = field(default_factory=dict)  # the latest validation's loss and main statistic
    validation_episode: int | None = None
    training_time_s: float | None = None  # the training's own clock (the CSV's time), resumes included
    wall_time_s: float | None = None  # finished: its (last) attempt's wall time; running: since it started
    test: State | None = None  # its test's state (None: not tested, a search trial)
    note: str = ""  # the last error line of a failure; what an interrupted or queued experiment waits for


@dataclass
class GridStatus:
    """A grid folder's state at ``read_at``."""

    folder: Path
    running: bool  # a grid process holds the grid folder's lock
    holder: str  # the lock file's account of the process that took it last ("holder unknown": never taken)
    command: str  # that process's command line ("" when unknown)
    phase: str  # "train" or "test": what the grid process does, else what was done last
    experiments: list[ExperimentStatus]
    planned: int  # experiments in all, counting a search's trials not asked yet
    counts: dict[str, int]  # training states -> how many (the phase's states in the test phase)
    progress: float | None  # the share of the phase's work done
    eta_s: float | None  # time left, estimated; None: unknown
    eta_basis: str  # what the estimate rests on, or why there is none
    search: list[str] = field(default_factory=list)  # per search task: its trials by state
    read_at: float = 0.0

    @property
    def finished(self) -> bool:
        """Nothing left to run: every experiment has ended (done, pruned or failed) in the phase shown."""
        unfinished = (State.QUEUED, State.RUNNING, State.INTERRUPTED)
        return not self.running and not any(self.counts.get(state.value) for state in unfinished)


# ------------------------------------------------------------------------------------------------ reading


def last_row(path: Path) -> dict[str, Any] | None:
    """The last complete row of a statistics CSV, numbers parsed; None when there is none (yet).

    Read from the end: a line not ended by a newline is a row being written (or torn by a kill) and is
    skipped, as is a line whose cells do not match the header.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.readline(TAIL_BYTES)
            size = os.fstat(handle.fileno()).st_size
            start = max(len(header), size - TAIL_BYTES)
            handle.seek(start)
            tail = handle.read(size - start)
    except OSError:
        return None
    if not header.endswith(b"\n"):
        return None
    columns = header.decode(errors="replace").strip().split(",")
    lines = tail.split(b"\n")[:-1]  # what follows the last newline is unfinished
    if start > len(header) and lines:
        lines = lines[1:]  # the tail began inside a line
    for line in reversed(lines):
        cells = line.decode(errors="replace").strip().split(",")
        if len(cells) == len(columns) and cells != columns:
            return {k: number(v) for k, v in zip(columns, cells)}
    return None


def first_epoch_episodes(path: Path) -> float | None:
    """How many episodes a training's first epoch had, from its CSV's first rows (None: still in it)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(HEAD_BYTES).decode(errors="replace")
    except OSError:
        return None
    lines = text.split("\n")[:-1]
    if not lines:
        return None
    columns = lines[0].strip().split(",")
    if "episode" not in columns or "epoch" not in columns:
        return None
    at_episode, at_epoch = columns.index("episode"), columns.index("epoch")
    last_of_first = None
    for line in lines[1:]:
        cells = line.strip().split(",")
        if len(cells) != len(columns):
            continue
        episode, epoch = number(cells[at_episode]), number(cells[at_epoch])
        if not isinstance(episode, int) or not isinstance(epoch, int):
            continue
        if epoch == 0:
            last_of_first = episode
        elif last_of_first is not None:  # rows may be logged every few episodes: the boundary lies between
            return float(last_of_first) if episode == last_of_first + 1 else (last_of_first + episode - 1) / 2
    return None


def progress_of(episode: int | None, epoch: int | None, episode_limit: int | None, epoch_limit: int | None,
                episodes_per_epoch: float | None) -> float | None:
    """The share of its limits a training has done: the nearer of episodes and epochs (None: no limit)."""
    shares = []
    if episode_limit and episode is not None:
        shares.append(episode / episode_limit)
    if epoch_limit and episode is not None and episodes_per_epoch:
        shares.append(episode / (episodes_per_epoch * epoch_limit))
    elif epoch_limit and epoch is not None:
        shares.append(epoch / epoch_limit)  # whole epochs only, until the first has ended
    return min(1.0, max(shares)) if shares else None


def _limits(config: Any) -> tuple[int | None, int | None]:
    conditions = ((config or {}).get("training") or {}).get("terminal_conditions") or {} \
        if isinstance(config, dict) else {}
    if not isinstance(conditions, dict):
        return None, None
    limits = [conditions.get(k) for k in ("episode_limit", "epoch_limit")]
    return tuple(v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None for v in limits)


def _main_statistic(row: dict[str, Any]) -> str | None:
    return next((s for s in MAIN_STATISTICS if isinstance(row.get(s), (int, float))), None)


class StatusReader:
    """Reads a grid folder's status, again and again (``--watch``, the live report): what cannot change any
    more (a finished experiment's CSVs, a config's limits, a first epoch's length) is read once."""

    def __init__(self, folder: Path, settings: GridSettings | None = None) -> None:
        self.folder = Path(folder)
        # a folder that is no grid, or a damaged one, is a ConfigError (exit 2) naming it, as for the other commands
        self._manifest = Manifest.load(self.folder)
        self.settings: GridSettings = settings or load_settings(self.folder)
        self._cache: dict[tuple[str, Path], tuple[tuple[int, int], Any]] = {}

    # files are read again only when they changed (size and time)
    def _cached(self, kind: str, path: Path, read: Any) -> Any:
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        hit = self._cache.get((kind, path))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = read(path)
        self._cache[(kind, path)] = (stamp, value)
        return value

    @property
    def manifest(self) -> Manifest:
        """The manifest as last read."""
        return self._manifest

    def _manifest_now(self) -> Manifest:
        """The manifest as it is now; the last one read if it cannot be read this time (the grid writes it
        atomically, so only a damaged or vanished file gets here)."""
        try:
            self._manifest = Manifest.load(self.folder)
        except Exception:  # keep showing the last state rather than stopping a watch
            pass
        return self._manifest

    def read(self, running: bool | None = None) -> GridStatus:
        """The grid's status now. ``running`` says whether its grid process runs, when the caller knows
        (the grid process itself); else the lock tells."""
        now = time.time()
        manifest = self._manifest_now()
        lock = lock_state(self.folder)
        alive = lock.held if running is None else running
        what = str(lock.holder.get("what", ""))
        tested = any(r.test_status != PENDING for r in manifest.records)
        phase = what.split()[-1] if alive and what.startswith("grid ") else ("test" if tested else "train")
        rows = [self._experiment(record, alive, now) for record in manifest.records]
        if not tested:
            for row in rows:
                row.test = None
        planned, search = self._search(manifest, rows)
        status = GridStatus(self.folder, alive, lock.describe(), str(lock.holder.get("command", "")), phase, rows,
                            planned, {}, None, None, "", search, now)
        _summarize(status, self.settings.max_concurrent_runs)
        return status

    def _experiment(self, record: ExperimentRecord, alive: bool, now: float) -> ExperimentStatus:
        row = ExperimentStatus(record.id, _state(record.status, alive), record.attempts, record.phase, record.trial)
        if row.state is State.DONE and record.search_state == PRUNED:
            row.state = State.PRUNED
        if record.phase != SEARCH:
            row.test = _state(record.test_status, alive)
        folder = self.folder / record.folder if record.folder else None
        if (folder is None and record.status != PENDING) or record.status == RUNNING:
            folder = newest_experiment(self.folder / grid_output_dir(record.id)) or folder  # not in the manifest yet
        config = folder / TRAINING_CONFIG if folder is not None and (folder / TRAINING_CONFIG).is_file() \
            else self.folder / record.config
        row.episode_limit, row.epoch_limit = self._cached("limits", config, lambda p: _limits(read_yaml(p))) \
            or (None, None)
        if folder is not None:
            self._statistics(row, folder)
        if record.started is not None:
            end = record.ended if record.status in (DONE, FAILED) and record.ended else None
            if end is not None:
                row.wall_time_s = max(0.0, end - record.started)
            elif row.state is State.RUNNING:
                row.wall_time_s = max(0.0, now - record.started)
        row.note = self._note(record, row, folder)
        return row

    def _statistics(self, row: ExperimentStatus, folder: Path) -> None:
        training = self._cached("last", folder / TRAINING_CSV, last_row) or {}
        validation = self._cached("last", folder / VALIDATION_CSV, last_row) or {}
        row.episode = training.get("episode") if isinstance(training.get("episode"), int) else None
        row.epoch = training.get("epoch") if isinstance(training.get("epoch"), int) else None
        row.training_time_s = training.get("time") if isinstance(training.get("time"), (int, float)) else None
        per_epoch = None
        if row.epoch_limit and row.epoch:
            per_epoch = self._cached("epoch", folder / TRAINING_CSV, first_epoch_episodes)
        row.progress = progress_of(row.episode, row.epoch, row.episode_limit, row.epoch_limit, per_epoch)
        if row.state is State.DONE:
            row.progress = 1.0 if row.progress is not None else None
        if validation:
            main = _main_statistic(validation)
            row.validation = {k: validation[k] for k in ("loss", main) if k and isinstance(validation.get(k),
                                                                                          (int, float))}
            row.validation_episode = validation.get("episode") if isinstance(validation.get("episode"), int) \
                else None

    def _note(self, record: ExperimentRecord, row: ExperimentStatus, folder: Path | None) -> str:
        if row.state is State.FAILED:
            return _one_line(record.last_error) or f"exit code {record.exit_code}"
        if row.test is State.FAILED:
            return "test: " + (_one_line(record.test_last_error) or f"exit code {record.test_exit_code}")
        if row.state is State.INTERRUPTED and folder is not None:
            trainer = lock_state(folder)
            if trainer.held:
                return f"its trainer is still finishing ({trainer.describe()})"
            ended = read_json(folder / RUN_INFO).get("status")
            if ended in TRAINED:
                return f"its training had ended ({ended}): taken as done on resume"
            return "resumes from its last checkpoint"
        if row.state is State.QUEUED and record.attempts and record.last_error:
            return f"retried after: {_one_line(record.last_error)}"
        after = record.extra.get("after") if isinstance(record.extra, dict) else None
        if row.state is State.QUEUED and after:
            return f"starts after {after}"
        if record.phase == SEARCH and record.objective is not None:
            return f"objective {record.objective:.4g}"
        return ""

    def _search(self, manifest: Manifest, rows: list[ExperimentStatus]) -> tuple[int, list[str]]:
        """Experiments in all (a search asks its trials as slots free up) and a line per search task."""
        search = self.settings.search
        info = manifest.info.get("search") if isinstance(manifest.info.get("search"), dict) else None
        if search is None or info is None:
            return len(rows), []
        planned, lines = len(rows), []
        by_id = {row.id: row for row in rows}
        seeds = search.reevaluate.seeds * search.reevaluate.top
        for task in info.get("tasks", []):
            name = task.get("name")
            trials = [r for r in manifest.records if r.phase == SEARCH and r.task == name]
            again = [r for r in manifest.records if r.phase == REEVALUATION and r.task == name]
            stopped = name in info.get("gave_up", {})
            if not stopped:
                planned += max(0, search.trials - len(trials))
                if name not in info.get("reevaluated", []):
                    planned += seeds
            states: dict[str, int] = {}
            for record in trials:
                state = str(by_id[record.id].state)
                states[state] = states.get(state, 0) + 1
            line = f"search {name}: {len(trials)} of {search.trials} trials"
            line += (" (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")") if states else ""
            if seeds:
                finished = sum(1 for r in again if by_id[r.id].state is State.DONE)
                line += f"; re-evaluation: {finished} of {seeds} runs done"
            if stopped:
                line += "; STOPPED: every one of its first trials failed"
            lines.append(line)
        return planned, lines


def _state(status: str, alive: bool) -> State:
    if status == RUNNING:
        return State.RUNNING if alive else State.INTERRUPTED
    return {PENDING: State.QUEUED, DONE: State.DONE, FAILED: State.FAILED}.get(status, State.QUEUED)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())[:300]


# ------------------------------------------------------------------------------------- progress and time left


def _summarize(status: GridStatus, slots: int) -> None:
    rows = status.experiments
    if status.phase == "test":
        tested = [r for r in rows if r.test is not None and r.state is State.DONE]
        counts: dict[str, int] = {}
        for row in tested:
            counts[str(row.test)] = counts.get(str(row.test), 0) + 1
        status.counts = counts
        ended = sum(1 for r in tested if r.test in (State.DONE, State.FAILED))
        status.progress = ended / len(tested) if tested else None
        status.eta_basis = "tests are not timed" if status.running else "the grid is not running"
        return
    counts = {}
    for row in rows:
        counts[str(row.state)] = counts.get(str(row.state), 0) + 1
    status.counts = counts
    ended = [r for r in rows if r.state in (State.DONE, State.PRUNED, State.FAILED)]
    working = [r for r in rows if r.state in (State.RUNNING, State.INTERRUPTED)]
    status.progress = (len(ended) + sum(r.progress or 0.0 for r in working)) / status.planned \
        if status.planned else None
    if not status.running:
        status.eta_basis = "the grid is not running"
        return
    status.eta_s, status.eta_basis = estimate_time_left(rows, status.planned, slots)


def estimate_time_left(rows: list[ExperimentStatus], planned: int, slots: int) -> tuple[float | None, str]:
    """Seconds until the experiments still to run have trained (None: nothing to base it on), and the basis."""
    finished = [r.wall_time_s for r in rows if r.state in (State.DONE, State.PRUNED) and r.wall_time_s]
    running = [r for r in rows if r.state is State.RUNNING]
    waiting = planned - len(rows) + sum(1 for r in rows if r.state is State.QUEUED)
    if not running and not waiting:
        return 0.0, "nothing left to train"
    # each running one: its training time so far, scaled to what is left of its limits
    paced = {r.id: r.training_time_s * (1 - r.progress) / r.progress for r in running
             if r.progress is not None and r.progress >= MIN_PROGRESS and r.training_time_s}
    if finished:
        each = sum(finished) / len(finished)
        basis = f"{len(finished)} finished experiment{'s' if len(finished) > 1 else ''} (mean {duration(each)})"
    elif paced:
        projected = [r.training_time_s / r.progress for r in running if r.id in paced]
        each = sum(projected) / len(projected)
        basis = "the pace of the running experiments"
    else:
        return None, "nothing has finished yet and the running experiments are not far enough along"
    left = []
    for row in running:
        if row.id in paced:
            left.append(paced[row.id])
        else:  # too early (or no limit) to read its own pace: a finished one's time, less what it has run
            left.append(max(0.0, each - (row.wall_time_s or 0.0)))
    if paced and finished:
        basis += " and the pace of the running ones"
    # the queue is laid out on the slots as they free up (the runner starts the next one as one ends)
    ends = sorted(left) + [0.0] * max(0, slots - len(left))
    heapq.heapify(ends)
    for _ in range(waiting):
        heapq.heappush(ends, heapq.heappop(ends) + each)
    return max(ends), f"{basis}, {slots} at a time"


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``: a time as a person reads it."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ---------------------------------------------------------------------------------------------- as text


def cells(row: ExperimentStatus) -> dict[str, str]:
    """One experiment's row as the table and the report page show it (column -> text)."""
    episode = ""
    if row.episode is not None:
        episode = f"{row.episode}/{row.episode_limit}" if row.episode_limit else str(row.episode)
        if row.epoch_limit and row.epoch is not None:
            episode += f" (epoch {row.epoch}/{row.epoch_limit})"
    validation = ", ".join(f"{k} {v:.4g}" for k, v in row.validation.items())
    if validation and row.validation_episode is not None:
        validation += f" @{row.validation_episode}"
    trial = ""
    if row.phase is not None:
        trial = (f"#{row.trial}" if row.phase == SEARCH else f"re-eval of #{row.trial}") if row.trial is not None \
            else row.phase
    return {"experiment": row.id, "trial": trial, "state": str(row.state), "attempts": str(row.attempts),
            "episode": episode, "progress": f"{row.progress:.0%}" if row.progress is not None else "",
            "validation": validation, "time": duration(row.wall_time_s or row.training_time_s),
            "test": str(row.test) if row.test is not None else "", "note": row.note}


def columns(status: GridStatus) -> list[str]:
    """The columns worth showing: a search's trial numbers and the test states only where there are some."""
    shown = ["experiment", "trial", "state", "attempts", "episode", "progress", "validation", "time", "test", "note"]
    if not any(r.phase is not None for r in status.experiments):
        shown.remove("trial")
    if not any(r.test is not None for r in status.experiments):
        shown.remove("test")
    if not any(r.note for r in status.experiments):
        shown.remove("note")
    return shown


def resume_command(status: GridStatus) -> str:
    """The command that continues a grid that stopped before its end (as it was started: `run` or `train`)."""
    if " grid run " in f" {status.command} ":
        return shell_line(["grid", "run", RESUME_FLAG, status.folder])
    if status.phase == "test":
        return shell_line(["grid", "test", status.folder])
    return shell_line(["grid", "train", RESUME_FLAG, status.folder])


def summary_lines(status: GridStatus) -> list[str]:
    """The lines under the table: is the grid running, how far it is, the time left, the search tasks."""
    last = f" (the last: {status.holder})" if status.holder != "holder unknown" else ""
    if status.running:
        lines = [f"grid: running ({status.holder})"]
    elif status.finished:
        lines = [f"grid: ended, no grid process runs{last}"]
    else:
        lines = [f"grid: NOT RUNNING: no process holds the grid folder's lock, its grid process is gone{last}"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items()))
    if status.phase == "test":
        lines.append(f"testing: {counts or 'nothing to test'}"
                     + (f" — {status.progress:.0%} tested" if status.progress is not None else ""))
    else:
        lines.append(f"training: {counts or 'no experiment'} of {status.planned} planned"
                     + (f" — {status.progress:.0%} of the work" if status.progress is not None else ""))
    lines += status.search
    if status.running:
        left = f"about {duration(status.eta_s)}" if status.eta_s is not None else "unknown"
        lines.append(f"time left: {left} ({status.eta_basis})")
    elif not status.finished:
        lines.append(f"continue with: {resume_command(status)}")
    return lines

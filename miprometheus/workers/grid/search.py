"""The search of a grid: one Optuna study per task, owned by the grid process alone (ask-and-tell).

Trials are ordinary experiments of the grid (a config, a seed, a manifest entry, run by any
executor). The grid process asks the study for a trial when a slot is free, reads each running
trial's validation statistics as they appear, reports them at their episode and asks
``should_prune`` (a pruned trial is asked to stop through ``stop_request.json``, honoured at its next
validation), and tells the study how each trial ended. The studies live in one journal file in the
grid folder (``JournalFileBackend``: an append-only log, no server, nothing a worker locks).

Exactness across kills (DESIGN §7): a trial's parameters and seed are written to the manifest when
it is asked, so a killed trial is resumed from its checkpoint with the same parameters, never drawn
again; a trial asked but not yet in the manifest when the grid died is adopted from the journal; the
sampler is re-seeded from (grid seed, task, trial number) before every ask, so a resumed search
proposes what an uninterrupted one would have, given the same finished trials.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.config.yaml_loader import dump_yaml
from miprometheus.files import atomic_write_text
from miprometheus.layout import RUN_INFO, SEARCH_JOURNAL, VALIDATION_CSV, grid_config_file, grid_output_dir
from miprometheus.workers.callbacks.stop_request import request_stop
from miprometheus.workers.grid.analysis.collect import read_json
from miprometheus.workers.grid.folders import newest_experiment
from miprometheus.workers.grid.manifest import (
    DONE,
    FAILED,
    PRUNED,
    REEVALUATION,
    RUNNING,
    SEARCH,
    ExperimentRecord,
    Manifest,
)
from miprometheus.workers.grid.search_settings import Dimension, SearchSettings
from miprometheus.workers.grid.spec import config_hash, set_dotted, slug
from miprometheus.workers.stop_cause import StopCause

logger = logging.getLogger("miprometheus.grid")

#: a task stops searching when this many of its first trials all failed (the grid names the first error)
FAILURES_BEFORE_GIVING_UP = 3


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def derived_seed(*parts: Any) -> int:
    """A seed that depends only on ``parts`` (Python's string seeding is stable across runs and machines)."""
    return random.Random(":".join(str(p) for p in parts)).randrange(2**31 - 1)


# ----------------------------------------------------------------------------------- the manifest's part


@dataclass
class SearchTaskInfo:
    """What the manifest keeps of a task's search: its base config file, its space, a fixed seed."""

    name: str
    base_config: str  # relative to the grid folder
    space: dict[str, dict[str, Any]]  # key -> Dimension fields
    seed: int | None = None

    def dimensions(self) -> dict[str, Dimension]:
        return {key: Dimension(**{**fields, "choices": tuple(fields.get("choices", ()))})
                for key, fields in self.space.items()}


def search_info(tasks: list[Any], seed: int) -> dict[str, Any]:
    """The ``search`` entry of a new grid's manifest (``tasks``: the grid spec's SearchTasks)."""
    return {"seed": seed, "journal": SEARCH_JOURNAL,
            "tasks": [{"name": t.name, "base_config": task_config_file(t.name), "seed": t.seed,
                       "space": {k: {**vars(d), "choices": list(d.choices)} for k, d in t.dimensions.items()}}
                      for t in tasks],
            "reevaluated": [], "gave_up": {}}


def task_config_file(task: str) -> str:
    """Where a search task's base config is kept in the grid folder (trials are copies with their values set)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in task)
    return grid_config_file(f"search_task_{safe}")


# --------------------------------------------------------------------------------------------- samplers


def make_sampler(name: str, seed: int, dimensions: dict[str, Dimension], trials: int) -> Any:
    """The sampler of a study, seeded (made afresh before every ask: see the module docstring)."""
    optuna = _optuna()
    samplers = optuna.samplers
    if name == "tpe":
        # Few trials per task in a fair comparison: start modelling after a third of the budget, not after 10.
        return samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                   n_startup_trials=max(2, min(10, trials // 3)))
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)))
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed, n_startup_trials=max(1, min(10, trials // 3)))
    if name == "grid":
        return samplers.GridSampler({k: d.grid_values() for k, d in dimensions.items()}, seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def make_pruner(name: str, trials: int) -> Any:
    pruners = _optuna().pruners
    if name == "asha":
        return pruners.SuccessiveHalvingPruner()
    if name == "median":
        return pruners.MedianPruner(n_startup_trials=max(2, min(5, trials // 4)), n_warmup_steps=0)
    if name == "hyperband":
        return pruners.HyperbandPruner()
    if name == "none":
        return pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")


def open_journal(folder: Path) -> Any:
    """The grid's journal storage (a file lock makes it safe for several processes, also on NFS)."""
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(folder) / SEARCH_JOURNAL)))


# ----------------------------------------------------------------------------------------- the reading


def validation_rows(folder: Path) -> list[dict[str, str]]:
    """The complete rows of an experiment's validation statistics (a half-written last line is left out)."""
    try:
        text = (folder / VALIDATION_CSV).read_text(errors="replace")
    except OSError:
        return []
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class Watch:
    """What the search has read of one running trial."""

    reported: set[int] = field(default_factory=set)
    stop_requested: bool = False


# ---------------------------------------------------------------------------------------------- search


class Search:
    """The studies of a grid's tasks, driven by the GridRunner's loop (``fill``, ``watch``, ``conclude``)."""

    def __init__(self, folder: Path, manifest: Manifest, settings: SearchSettings, max_concurrent: int) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.settings = settings
        self.max_concurrent = max_concurrent
        self.info = manifest.info["search"]
        self.tasks = [SearchTaskInfo(**{k: t[k] for k in ("name", "base_config", "space", "seed")})
                      for t in self.info["tasks"]]
        self.dimensions = {t.name: t.dimensions() for t in self.tasks}
        optuna = _optuna()
        self.storage = open_journal(self.folder)
        direction = settings.objective.direction
        self.studies = {t.name: optuna.create_study(
            study_name=t.name, storage=self.storage, direction=direction, load_if_exists=True,
            sampler=make_sampler(settings.sampler, self.info["seed"], self.dimensions[t.name], settings.trials),
            pruner=make_pruner(settings.pruner, settings.trials)) for t in self.tasks}
        self.watches: dict[str, Watch] = {}
        self._reconcile()

    # --- records ------------------------------------------------------------------------------------
    def trials_of(self, task: str) -> list[ExperimentRecord]:
        return [r for r in self.manifest.records if r.phase == SEARCH and r.task == task]

    def _reconcile(self) -> None:
        """After a grid process died: adopt trials asked but never recorded, tell what ended but was never told."""
        for task in self.tasks:
            study = self.studies[task.name]
            recorded = {r.trial for r in self.trials_of(task.name)}
            for trial in study.get_trials(deepcopy=False):
                if trial.number in recorded:
                    continue
                if trial.state.name == "RUNNING" and len(recorded) < self.settings.trials:
                    self._add_trial(task, trial.number, dict(trial.params))
                    recorded.add(trial.number)
                    logger.info("search %s: trial %d adopted from the journal", task.name, trial.number)
                elif trial.state.name == "RUNNING":
                    study.tell(trial.number, state=optuna_state("FAIL"))
        for record in self.manifest.records:
            if record.phase == SEARCH and record.search_state == RUNNING and record.status in (DONE, FAILED):
                self.conclude(record, ok=record.status == DONE)

    def _trial_seed(self, task: SearchTaskInfo, number: int) -> int:
        return task.seed if task.seed is not None else derived_seed(self.info["seed"], task.name, "trial", number)

    def _add_trial(self, task: SearchTaskInfo, number: int, params: dict[str, Any]) -> ExperimentRecord:
        seed = self._trial_seed(task, number)
        experiment_id = f"{len(self.manifest.records):03d}_{slug(task.name)}_t{number}"
        record = self._new_record(task, experiment_id, SEARCH, number, params, seed)
        record.search_state = RUNNING
        self.manifest.records.append(record)
        self.manifest.save()
        return record

    def _new_record(self, task: SearchTaskInfo, experiment_id: str, phase: str, number: int,
                    params: dict[str, Any], seed: int) -> ExperimentRecord:
        """Write the experiment's config (the task's, with the parameters and seed set) and make its record."""
        base = _read_yaml(self.folder / task.base_config)
        config = copy.deepcopy(base)
        for key, value in params.items():
            set_dotted(config, key, value)
        set_dotted(config, "training.seed", seed)
        path = grid_config_file(experiment_id)
        atomic_write_text(self.folder / path, dump_yaml(config))
        return ExperimentRecord(id=experiment_id, task=task.name, repetition=0, sweep={}, seed=seed, config=path,
                                config_hash=config_hash(config), phase=phase, trial=number, params=dict(params))

    # --- asking ---------------------------------------------------------------------------------------
    def fill(self, free: int) -> list[str]:
        """Ask new trials for up to ``free`` slots (tasks with the fewest trials first), and queue the
        re-evaluations of tasks whose search has ended. Returns the new experiments' ids."""
        new: list[str] = []
        new += self._start_reevaluations()
        while len(new) < free:
            task = self._next_task()
            if task is None:
                break
            new.append(self._ask(task).id)
        return new

    def _next_task(self) -> SearchTaskInfo | None:
        open_tasks = [t for t in self.tasks if len(self.trials_of(t.name)) < self.settings.trials
                      and t.name not in self.info["gave_up"]]
        return min(open_tasks, key=lambda t: len(self.trials_of(t.name)), default=None)

    def _ask(self, task: SearchTaskInfo) -> ExperimentRecord:
        study = self.studies[task.name]
        number = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(self.settings.sampler, derived_seed(self.info["seed"], task.name, "ask", number),
                                     self.dimensions[task.name], self.settings.trials)
        trial = study.ask({k: d.distribution() for k, d in self.dimensions[task.name].items()})
        params = {key: _plain(trial.params[key]) for key in self.dimensions[task.name]}
        record = self._add_trial(task, trial.number, params)
        logger.info("search %s: trial %d asked: %s", task.name, trial.number, _text(params))
        return record

    def finished(self) -> bool:
        """Nothing left to ask or to re-evaluate (the runner stops when its queue is empty too)."""
        if self._next_task() is not None:
            return False
        return all(t.name in self.info["reevaluated"] or t.name in self.info["gave_up"] for t in self.tasks)

    # --- watching -------------------------------------------------------------------------------------
    def watch(self, running: list[str]) -> None:
        """Report the new validations of running trials; ask a trial the pruner stops to stop."""
        for experiment_id in running:
            record = self.manifest.get(experiment_id)
            if record.phase != SEARCH or record.search_state != RUNNING:
                continue
            folder = newest_experiment(self.folder / grid_output_dir(record.id))
            if folder is None:
                continue
            self._report(record, folder)

    def _watch(self, record: ExperimentRecord) -> Watch:
        if record.id not in self.watches:
            trial = self._frozen(record)
            self.watches[record.id] = Watch(set(trial.intermediate_values) if trial else set())
        return self.watches[record.id]

    def _frozen(self, record: ExperimentRecord) -> Any:
        for trial in self.studies[record.task].get_trials(deepcopy=False):
            if trial.number == record.trial:
                return trial
        return None

    def _report(self, record: ExperimentRecord, folder: Path) -> None:
        watch = self._watch(record)
        statistic = self.settings.objective.statistic
        fresh = [(int(float(row["episode"])), number(row.get(statistic))) for row in validation_rows(folder)
                 if number(row.get("episode")) is not None]
        fresh = [(step, value) for step, value in fresh if step not in watch.reported and value is not None]
        if not fresh:
            return
        trial = self._trial(record)
        for step, value in fresh:
            trial.report(value, step)
            watch.reported.add(step)
        if not watch.stop_requested and trial.should_prune():
            watch.stop_requested = True
            step, value = fresh[-1]
            request_stop(folder, StopCause.PRUNED, f"search pruner ({self.settings.pruner}): validation "
                                                   f"{statistic} {value:.4g} at episode {step}")
            logger.info("search %s: trial %d pruned at episode %d", record.task, record.trial, step)

    def _trial(self, record: ExperimentRecord) -> Any:
        optuna = _optuna()
        study = self.studies[record.task]
        study_id = self.storage.get_study_id_from_name(record.task)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, record.trial)
        return optuna.trial.Trial(study, trial_id)

    # --- telling --------------------------------------------------------------------------------------
    def conclude(self, record: ExperimentRecord, ok: bool) -> None:
        """Tell the study how a trial ended for good: done (its best validation value), pruned or failed."""
        if record.phase != SEARCH or record.search_state != RUNNING:
            return
        study = self.studies[record.task]
        frozen = self._frozen(record)
        folder = self.folder / record.folder if record.folder else None
        state, value = FAILED, None
        if ok and folder is not None:
            if folder.is_dir():
                self._report(record, folder)  # the validations written since the last look
            cause = read_json(folder / RUN_INFO).get("termination_cause")
            value = self._objective(folder)
            state = PRUNED if cause == StopCause.PRUNED.value else (DONE if value is not None else FAILED)
        if frozen is not None and frozen.state.name == "RUNNING":
            if state == DONE:
                study.tell(record.trial, value)
            else:
                study.tell(record.trial, state=optuna_state("PRUNED" if state == PRUNED else "FAIL"))
        self.manifest.update(record.id, search_state=state, objective=value)
        self.watches.pop(record.id, None)
        logger.info("search %s: trial %d %s%s", record.task, record.trial, state,
                    f" ({self.settings.objective.statistic} {value:.4g})" if value is not None else "")
        self._give_up_if_all_failed(record.task)

    def _objective(self, folder: Path) -> float | None:
        """The best value of the objective statistic over the trial's validations (None: none, or not finite)."""
        statistic = self.settings.objective.statistic
        values = [number(row.get(statistic)) for row in validation_rows(folder)]
        if not values or any(v is None for v in values):
            return None  # no validation, or a NaN (the run diverged): the trial failed
        pick = min if self.settings.objective.direction == "minimize" else max
        return pick(v for v in values if v is not None)

    def _give_up_if_all_failed(self, task: str) -> None:
        ended = [r for r in self.trials_of(task) if r.search_state != RUNNING]
        first = sorted(ended, key=lambda r: r.trial or 0)[:FAILURES_BEFORE_GIVING_UP]
        budget = min(self.settings.trials, FAILURES_BEFORE_GIVING_UP)
        if len(first) >= budget and all(r.search_state == FAILED for r in first) and task not in self.info["gave_up"]:
            error = first[0].last_error or "no validation value of the objective"
            self.info["gave_up"][task] = f"{first[0].id}: {error}"
            self.manifest.save()
            logger.error("search %s stopped: its first %d trials failed; the first error (%s): %s", task,
                         len(first), first[0].id, error)

    # --- re-evaluation --------------------------------------------------------------------------------
    def _start_reevaluations(self) -> list[str]:
        """The re-evaluation experiments of every task whose search has ended, made once (in one manifest save)."""
        new: list[str] = []
        for task in self.tasks:
            if task.name in self.info["reevaluated"] or task.name in self.info["gave_up"]:
                continue
            trials = self.trials_of(task.name)
            if len(trials) < self.settings.trials or any(r.search_state == RUNNING for r in trials):
                continue
            new += self._reevaluate(task, trials)
        return new

    def _reevaluate(self, task: SearchTaskInfo, trials: list[ExperimentRecord]) -> list[str]:
        done = [r for r in trials if r.search_state == DONE and r.objective is not None]
        reverse = self.settings.objective.direction == "maximize"
        best = sorted(done, key=lambda r: (-(r.objective or 0.0) if reverse else (r.objective or 0.0), r.trial))
        best = best[: self.settings.reevaluate.top]
        used = {r.seed for r in self.manifest.records}
        records = []
        for rank, trial in enumerate(best):
            for k in range(self.settings.reevaluate.seeds):
                seed, n = derived_seed(self.info["seed"], task.name, "reevaluation", trial.trial, k), 0
                while seed in used:  # fresh: never a seed of the search (nor of another re-evaluation)
                    n += 1
                    seed = derived_seed(self.info["seed"], task.name, "reevaluation", trial.trial, k, n)
                used.add(seed)
                experiment_id = f"{len(self.manifest.records) + len(records):03d}_{slug(task.name)}_best{rank}_s{k}"
                records.append(self._new_record(task, experiment_id, REEVALUATION, trial.trial or 0,
                                                trial.params, seed))
        if not best:
            logger.warning("search %s: no trial completed, nothing to re-evaluate", task.name)
        self.manifest.records.extend(records)
        self.info["reevaluated"].append(task.name)
        self.manifest.save()
        if records:
            logger.info("search %s: re-evaluating trial(s) %s on %d fresh seeds", task.name,
                        ", ".join(str(r.trial) for r in best), self.settings.reevaluate.seeds)
        return [r.id for r in records]


def search_lines(manifest: Manifest) -> tuple[list[str], bool]:
    """The grid summary's lines on a search (per task: trials by state, the re-evaluated trial), and whether a
    task gave up (every one of its first trials failed: the line names the first error)."""
    info = manifest.info.get("search")
    if not info:
        return [], False
    lines = []
    for task in info["tasks"]:
        name = task["name"]
        trials = [r for r in manifest.records if r.phase == SEARCH and r.task == name]
        states: dict[str, int] = {}
        for record in trials:
            states[record.search_state or RUNNING] = states.get(record.search_state or RUNNING, 0) + 1
        again = sorted({r.trial for r in manifest.records if r.phase == REEVALUATION and r.task == name})
        seeds = sum(1 for r in manifest.records if r.phase == REEVALUATION and r.task == name)
        line = (f"search {name}: {len(trials)} trials (" + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                + ")" + (f"; trial(s) {', '.join(map(str, again))} re-evaluated in {seeds} runs" if again else ""))
        if name in info.get("gave_up", {}):
            line += f"\n  STOPPED: every one of its first trials failed; the first: {info['gave_up'][name]}"
        lines.append(line)
    return lines, bool(info.get("gave_up"))


def optuna_state(name: str) -> Any:
    return getattr(_optuna().trial.TrialState, name)


def _plain(value: Any) -> Any:
    """A parameter as YAML writes it (numpy scalars become Python numbers)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _read_yaml(path: Path) -> dict[str, Any]:
    from miprometheus.config.yaml_loader import load_yaml

    return load_yaml(path)[0] or {}

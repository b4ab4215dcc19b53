"""Grid files: tasks, overwrites, a parameter sweep and settings, expanded into one config per experiment.

Precedence, highest first (DESIGN §7): sweep value -> task ``overwrite`` -> ``grid_overwrite`` ->
task config -> its defaults.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from miprometheus.config.loader import (
    LoadedConfig,
    Origin,
    deep_merge,
    dotted_keys,
    load_config,
    resolve_interpolations,
)
from miprometheus.config.schema import Errors, build, unknown_key
from miprometheus.errors import ConfigError, MipError
from miprometheus.params import param

GRID_KEYS = ["grid_tasks", "grid_overwrite", "grid_settings", "description"]


@dataclass
class GridSettings:
    """How a grid runs (``grid_settings``)."""

    experiment_repetitions: int = param(1, "runs of each experiment, each with its own recorded seed", min=1)
    max_concurrent_runs: int = param(1, "experiments running at the same time", min=1)
    executor: Literal["local", "ray", "slurm"] = param("local", "local (child processes), ray or slurm")
    cpus_per_experiment: int | None = param(None, "CPU threads of each experiment; null: the cores divided "
                                                  "by max_concurrent_runs")
    gpus_per_experiment: float = param(0.0, "GPUs of each experiment (a fraction shares a GPU)")
    warm_start: bool = param(True, "local executor: fork each experiment from a process that has imported torch "
                                   "once (starts in a fraction of a second); false: a fresh process each")
    retries: int = param(1, "attempts after the first for an experiment that fails or is killed")
    sweep: dict[str, list[Any]] = param(factory=dict, doc="dotted key -> list of values; the grid runs the "
                                                          "Cartesian product with the tasks")
    test: bool = param(True, "mip grid run: test every finished experiment")
    report_statistics: list[str] = param(factory=list, doc="test statistics the console table shows beside the "
                                                           "main one (e.g. [acc_relational, acc_non_relational])")
    ray_address: str | None = param(None, "Ray cluster: host:port, 'auto', or null to start a local one")
    ray_shared_filesystem: bool = param(False, "Ray workers see the grid folder (else results are shipped)")
    slurm_partition: str | None = param(None, "SLURM partition")
    slurm_time_minutes: int = param(60, "SLURM time limit of one experiment")
    slurm_cluster: str | None = param(None, "submitit cluster: null (auto), slurm, local or debug")
    seed: int = param(-1, "seed of the seed draws for repetitions; -1: random")


@dataclass
class GridTask:
    """One entry of ``grid_tasks``."""

    default_configs: str = param(doc="experiment config file, relative to the grid file", path=True)
    overwrite: dict[str, Any] = param(factory=dict, doc="values that override the task's config")
    name: str | None = param(None, "a short name for the task (default: the config file's name)")
    after: str | None = param(None, "name of an earlier task: each experiment of this one starts once that task's "
                                    "experiment of the same repetition (and sweep values) has trained")
    after_folder_keys: list[str] = param(factory=list, doc="dotted keys set to the folder of that experiment "
                                                           "when this one starts (e.g. model.init_from)")


@dataclass
class PlannedExperiment:
    """One experiment of a grid: its id, where it comes from, and its complete config."""

    id: str
    task: str
    task_index: int
    repetition: int
    sweep: dict[str, Any]
    config: dict[str, Any]
    seed: int
    config_hash: str = ""
    #: the id of the experiment this one starts after, and the keys set to that experiment's folder
    after: str | None = None
    after_folder_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.config_hash:
            self.config_hash = config_hash(self.config)


@dataclass
class GridSpec:
    path: Path
    settings: GridSettings
    tasks: list[GridTask]
    experiments: list[PlannedExperiment] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def config_hash(tree: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "task"


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` of a nested mapping to a copy of ``value``, making the mappings on the way."""
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


def _overwrite(base: LoadedConfig, values: dict[str, Any], source: str) -> None:
    """Merge a nested (or dotted-key) overwrite mapping into a loaded config."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        piece: dict[str, Any] = {}
        set_dotted(piece, key, value)
        deep_merge(nested, {}, piece, {})
    origins = {k: Origin(source) for k in dotted_keys(nested)}
    deep_merge(base.tree, base.origins, nested, origins)


def load_grid(path: Path | str, overrides: list[str] | None = None, validate_tasks: bool = True) -> GridSpec:
    """Read and validate a grid file, and plan its experiments (configs validated before anything runs)."""
    path = Path(path).resolve()
    grid = load_config([path], overrides or [])
    errors = Errors()
    for key in grid.tree:
        if key not in GRID_KEYS:
            errors.append(unknown_key(grid, key, GRID_KEYS))
    settings = build(GridSettings, grid.tree.get("grid_settings") or {}, "grid_settings", grid, errors)
    raw_tasks = grid.tree.get("grid_tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        errors.append(f"{grid.where('grid_tasks')}'grid_tasks' must be a non-empty list of tasks "
                      "(each with default_configs)")
        raw_tasks = []
    tasks = []
    for i, raw in enumerate(raw_tasks):
        key = f"grid_tasks.{i}"
        task = build(GridTask, raw, key, grid, errors)
        if isinstance(task, GridTask):
            tasks.append(task)
    grid_overwrite = grid.tree.get("grid_overwrite") or {}
    if not isinstance(grid_overwrite, dict):
        errors.append(f"{grid.where('grid_overwrite')}'grid_overwrite' must be a mapping")
        grid_overwrite = {}
    if isinstance(settings, GridSettings):
        for key, values in settings.sweep.items():
            if not isinstance(values, list) or not values:
                errors.append(f"{grid.where('grid_settings.sweep.' + key)}sweep '{key}' must be a non-empty list")
    if errors:
        raise ConfigError(f"invalid grid file {path}:\n  - " + "\n  - ".join(errors))
    spec = GridSpec(path, settings, tasks, raw=grid.tree)
    spec.experiments = plan(spec, grid_overwrite, validate_tasks)
    return spec


def plan(spec: GridSpec, grid_overwrite: dict[str, Any], validate_tasks: bool = True) -> list[PlannedExperiment]:
    from miprometheus.config.experiment_spec import validate

    settings = spec.settings
    sweep_keys = list(settings.sweep)
    combos = list(itertools.product(*(settings.sweep[k] for k in sweep_keys))) or [()]
    rng = secrets.SystemRandom() if settings.seed == -1 else random.Random(settings.seed)
    used_seeds: set[int] = set()
    experiments: list[PlannedExperiment] = []
    problems: list[str] = []
    labels = [task.name or Path(task.default_configs).stem for task in spec.tasks]
    planned: dict[tuple[str, str, int], str] = {}  # (task, sweep values, repetition) -> experiment id
    for t, task in enumerate(spec.tasks):
        label = labels[t]
        if task.after is not None and task.after not in labels[:t]:
            problems.append(f"task {t} ({label}): after: {task.after!r} is not the name of an earlier task "
                            f"(earlier: {', '.join(labels[:t]) or 'none'})")
            continue
        if task.after_folder_keys and task.after is None:
            problems.append(f"task {t} ({label}): after_folder_keys needs after (the task whose folder they get)")
            continue
        for combo in combos:
            sweep = dict(zip(sweep_keys, combo))
            try:
                # interpolations (a validation split's ${training.problem.data_folder}) see the overwrites
                loaded = load_config([task.default_configs], resolve=False)
                _overwrite(loaded, grid_overwrite, f"{spec.path}: grid_overwrite")
                _overwrite(loaded, task.overwrite, f"{spec.path}: grid_tasks[{t}].overwrite")
                _overwrite(loaded, sweep, f"{spec.path}: grid_settings.sweep")
                resolve_interpolations(loaded)
                if validate_tasks:
                    validate(loaded)
            except MipError as exc:
                problems.append(f"task {t} ({label}{', sweep ' + str(sweep) if sweep else ''}): {exc}")
                continue
            task_seed = loaded.get("training.seed", -1)
            for r in range(settings.experiment_repetitions):
                config = copy.deepcopy(loaded.tree)
                if task_seed in (-1, None):
                    seed = rng.randrange(2**31 - 1)
                    while seed in used_seeds:
                        seed = rng.randrange(2**31 - 1)
                else:
                    seed = int(task_seed)  # a seed fixed in the task config is kept
                used_seeds.add(seed)
                set_dotted(config, "training.seed", seed)
                suffix = (f"_{_slug('-'.join(str(v) for v in combo))}" if len(combos) > 1 else "") + f"_r{r}"
                experiment_id = f"{len(experiments):03d}_{_slug(label)}{suffix}"
                combo_key = json.dumps(sweep, sort_keys=True, default=str)
                planned[(label, combo_key, r)] = experiment_id
                after = planned.get((task.after, combo_key, r)) if task.after is not None else None
                experiments.append(PlannedExperiment(experiment_id, label, t, r, sweep, config, seed,
                                                     after=after, after_folder_keys=list(task.after_folder_keys)))
    if problems:
        raise ConfigError(f"grid {spec.path}: invalid task configs (nothing was run):\n  - " + "\n  - ".join(problems))
    return experiments

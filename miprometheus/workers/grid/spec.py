"""Grid files: tasks, overwrites, a parameter sweep and settings, expanded into one config per experiment.

Precedence, highest first (DESIGN §7): sweep value -> task ``overwrite`` -> ``grid_overwrite`` ->
task config -> its defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
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
from miprometheus.config.sections import TOP_LEVEL
from miprometheus.config.yaml_loader import load_yaml
from miprometheus.errors import ConfigError, MipError
from miprometheus.layout import GRID_CONFIG
from miprometheus.params import MAX_SEED, MAX_THREADS, param
from miprometheus.workers.grid.search_settings import Dimension, SearchSettings, parse_space, task_space, with_values

GRID_KEYS = ["grid_tasks", "grid_overwrite", "grid_settings", "description"]
#: sections of an experiment config; on a grid's command line, ``training.x=1`` is ``grid_overwrite.training.x=1``
EXPERIMENT_SECTIONS = [key for key in TOP_LEVEL if key not in GRID_KEYS]


@dataclass
class GridSettings:
    """How a grid runs (``grid_settings``)."""

    experiment_repetitions: int = param(1, "runs of each experiment, each with its own recorded seed", min=1)
    max_concurrent_runs: int = param(1, "experiments running at the same time", min=1)
    executor: Literal["local", "ray", "slurm"] = param("local", "local (child processes), ray or slurm")
    cpus_per_experiment: int | None = param(None, "CPU threads of each experiment; null: the cores divided "
                                                  "by max_concurrent_runs", min=1, max=MAX_THREADS)
    gpus_per_experiment: float = param(0.0, "GPUs of each experiment (a fraction shares a GPU)", min=0, max=64)
    warm_start: bool = param(True, "local executor: fork each experiment from a process that has imported torch "
                                   "once (starts in a fraction of a second); false: a fresh process each")
    retries: int = param(1, "attempts after the first for an experiment that fails or is killed", min=0, max=100)
    sweep: dict[str, list[Any]] = param(factory=dict, doc="dotted key -> list of values; the grid runs the "
                                                          "Cartesian product with the tasks")
    test: bool = param(True, "mip grid run: test every finished experiment")
    report_statistics: list[str] = param(factory=list, doc="test statistics the console table shows beside the "
                                                           "main one (e.g. [acc_relational, acc_non_relational])")
    ray_address: str | None = param(None, "Ray cluster: host:port, 'auto', or null to start a local one")
    ray_shared_filesystem: bool = param(False, "Ray workers see the grid folder (else results are shipped)")
    slurm_partition: str | None = param(None, "SLURM partition")
    slurm_time_minutes: int = param(60, "SLURM time limit of one experiment", min=1)
    slurm_cluster: str | None = param(None, "submitit cluster: null (auto), slurm, local or debug")
    seed: int = param(-1, "seed of the seed draws for repetitions (and of a search's sampler); -1: random",
                      min=0, max=MAX_SEED, also=(-1,))
    tensorboard: int | None = param(None, "TensorBoard level of every experiment (0 scalars, 1 + weights, "
                                          "2 + gradients); null: none. A search's trials add their parameters "
                                          "to TensorBoard's HParams tab", min=0, max=2)
    search: SearchSettings | None = param(None, "a hyper-parameter search per task (Optuna, equal budgets, "
                                                "pruning, re-evaluation of the best on fresh seeds)")


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
    search_space: dict[str, Any] = param(factory=dict, doc="with grid_settings.search: space entries this task "
                                                           "adds or replaces (dotted key -> range or choices)")


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
class SearchTask:
    """A task of a grid with a search: its checked base config and the space its trials are drawn from."""

    name: str
    config: dict[str, Any]  # the task's effective config; a trial sets its parameters and seed in a copy
    dimensions: dict[str, Dimension]
    seed: int | None  # a seed fixed in the task's config (every trial keeps it), else None: one drawn per trial


@dataclass
class GridSpec:
    path: Path
    settings: GridSettings
    tasks: list[GridTask]
    experiments: list[PlannedExperiment] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    search_tasks: list[SearchTask] = field(default_factory=list)


def config_hash(tree: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """A task or value as a piece of an experiment id (letters, digits and dashes, at most 40)."""
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


def pin_paths(tree: dict[str, Any], spec: Any) -> None:
    """Write the paths of a task's config (data folders, index files, ``model.init_from``, a SQLite tracking URI) as
    the absolute paths they were read as: a relative path is relative to the file that set it, and the grid writes
    each experiment's config elsewhere (its ``configs/`` folder)."""
    for split in spec.splits.values():
        node = tree.get(split.name)
        _pin(split.section, node)
        if isinstance(node, dict):
            _pin(split.problem_params, node.get("problem"))
    init_from = getattr(spec.model, "init_from", None)
    model = tree.get("model")
    if isinstance(model, dict) and isinstance(model.get("init_from"), dict) and init_from is not None:
        _pin(init_from, model["init_from"])
    elif isinstance(model, dict) and isinstance(model.get("init_from"), str) and init_from is not None:
        model["init_from"] = getattr(init_from, "path", model["init_from"])
    tracking, node = getattr(spec, "tracking", None), tree.get("tracking")
    if tracking is not None and tracking.mlflow is not None and isinstance(node, dict) and isinstance(
            node.get("mlflow"), dict):
        node["mlflow"]["uri"] = tracking.mlflow.uri  # a sqlite:///FILE relative to the task's config, made absolute


def _pin(instance: Any, node: Any) -> None:
    if not (dataclasses.is_dataclass(instance) and isinstance(node, dict)):
        return
    for f in dataclasses.fields(instance):
        if f.name not in node:
            continue
        value = getattr(instance, f.name)
        if f.metadata.get("path") and isinstance(value, str) and isinstance(node[f.name], str):
            node[f.name] = value
        elif dataclasses.is_dataclass(value):
            _pin(value, node[f.name])


def _overwrite(base: LoadedConfig, values: dict[str, Any], source: str) -> None:
    """Merge a nested (or dotted-key) overwrite mapping into a loaded config."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        piece: dict[str, Any] = {}
        set_dotted(piece, key, value)
        deep_merge(nested, {}, piece, {})
    origins = {k: Origin(source) for k in dotted_keys(nested)}
    deep_merge(base.tree, base.origins, nested, origins)


def grid_overrides(overrides: list[str]) -> list[str]:
    """A grid's command-line overrides, each a key of the grid file: one that names an experiment section
    (``training.problem.data_folder=DIR``) is a ``grid_overwrite`` entry, so every task gets it and the saved grid
    file records it."""
    return [f"grid_overwrite.{item}" if item.partition("=")[0].strip().split(".")[0] in EXPERIMENT_SECTIONS
            else item for item in overrides]


def load_grid(path: Path | str, overrides: list[str] | None = None, validate_tasks: bool = True) -> GridSpec:
    """Read and validate a grid file, and plan its experiments (configs validated before anything runs)."""
    path = Path(path).resolve()
    grid = load_config([path], grid_overrides(overrides or []))
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
    if isinstance(settings, GridSettings) and settings.search is not None:
        errors += _search_setting_errors(settings, grid)
    if isinstance(settings, GridSettings):
        errors += _resource_errors(settings, grid)
    if errors:
        raise ConfigError(f"invalid grid file {path}:\n  - " + "\n  - ".join(errors))
    spec = GridSpec(path, settings, tasks, raw=grid.tree)
    if settings.search is not None:
        spec.search_tasks = plan_search(spec, grid, grid_overwrite, validate_tasks)
    else:
        spec.experiments = plan(spec, grid_overwrite, validate_tasks)
    return spec


def load_settings(folder: Path) -> GridSettings:
    """The settings a grid folder was created with (its ``grid_configuration.yaml``), checked as a grid file's are.

    The file is written by the grid itself, so a problem in it means the folder was damaged: ConfigError
    (exit 2) naming the file, and its line where there is one. Keys no longer known are skipped, so that
    a grid created by an older version still resumes.
    """
    path = Path(folder) / GRID_CONFIG
    if not path.is_file():
        raise ConfigError(f"{folder} is not a grid folder (no {GRID_CONFIG})")
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the grid folder's configuration is damaged: it must hold a mapping "
                          f"(grid_tasks, grid_settings, ...), not {type(data).__name__}; the grid cannot be resumed "
                          "from it (the grid file it was made from can be run again as a new grid)")
    config = LoadedConfig(data, {".".join(key): Origin(str(path), line, path.parent) for key, line in lines.items()})
    raw = data.get("grid_settings") or {}
    errors = Errors()
    unknown = tuple(k for k in raw if k not in GridSettings.__dataclass_fields__) if isinstance(raw, dict) else ()
    settings = build(GridSettings, raw, "grid_settings", config, errors, ignore=unknown)
    if errors or settings is None:
        raise ConfigError(f"{path}: the grid folder's configuration is damaged; nothing was run or written:\n  - "
                          + "\n  - ".join(errors or ["grid_settings cannot be read"]))
    return settings


def _resource_errors(settings: GridSettings, grid: LoadedConfig) -> list[str]:
    """Resources this machine cannot give: GPUs for the local executor where torch sees none."""
    if settings.executor != "local" or settings.gpus_per_experiment <= 0:
        return []
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        return [f"{grid.where('grid_settings.gpus_per_experiment')}'grid_settings.gpus_per_experiment' is "
                f"{settings.gpus_per_experiment:g}, and this machine has no GPU (torch.cuda.device_count() is 0): "
                "set it to 0, or run the grid where there are GPUs"]
    if settings.gpus_per_experiment > count:
        return [f"{grid.where('grid_settings.gpus_per_experiment')}'grid_settings.gpus_per_experiment' is "
                f"{settings.gpus_per_experiment:g}, more than the {count} GPU(s) of this machine "
                "(torch.cuda.device_count())"]
    return []


def _search_setting_errors(settings: GridSettings, grid: LoadedConfig) -> list[str]:
    """What a search cannot be combined with, and a re-evaluation larger than the budget."""
    search = settings.search
    assert search is not None
    errors = []
    where = grid.where("grid_settings.search")
    if settings.sweep:
        errors.append(f"{grid.where('grid_settings.sweep')}a grid with a search has no sweep: put the swept keys "
                      "in grid_settings.search.space (as choices)")
    if settings.experiment_repetitions != 1:
        errors.append(f"{grid.where('grid_settings.experiment_repetitions')}a grid with a search runs each trial "
                      "once: the best configurations' seeds are grid_settings.search.reevaluate.seeds")
    if search.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        errors.append(f"{grid.where('grid_settings.search.sampler') or where}sampler 'cmaes' needs the cmaes package, "
                      "which is not installed: pip install cmaes (or choose tpe, random, gp or grid)")
    if search.reevaluate.top > search.trials:
        errors.append(f"{grid.where('grid_settings.search.reevaluate.top') or where}reevaluate.top "
                      f"({search.reevaluate.top}) cannot exceed the trials of a task ({search.trials})")
    return errors


def plan_search(spec: GridSpec, grid: LoadedConfig, grid_overwrite: dict[str, Any],
                validate_tasks: bool = True) -> list[SearchTask]:
    """Each task's base config and space, checked: keys the config knows, values its schema accepts, the objective
    a statistic its validation produces. Every problem of every task is reported at once, nothing runs."""
    from miprometheus.config.experiment_spec import validate

    search = spec.settings.search
    assert search is not None
    problems: list[str] = []
    found: list[SearchTask] = []
    labels = [task.name or Path(task.default_configs).stem for task in spec.tasks]
    for t, task in enumerate(spec.tasks):
        if task.after is not None:
            problems.append(f"{grid.where(f'grid_tasks.{t}.after')}task {labels[t]}: a grid with a search has no "
                            "'after' tasks")
            continue

        def where(key: str, t: int = t) -> str:
            own = f"grid_tasks.{t}.search_space.{key}"
            return grid.where(own) if own in grid.origins else grid.where(f"grid_settings.search.space.{key}")

        raw_space = task_space(search, task.search_space)
        if not raw_space:
            problems.append(f"{grid.where('grid_settings.search')}task {labels[t]}: the search space is empty "
                            "(grid_settings.search.space or the task's search_space)")
            continue
        dimensions, errors = parse_space(raw_space, where)
        problems += [f"task {labels[t]}: {e}" for e in errors]
        if errors:
            continue
        try:
            loaded = load_config([task.default_configs], resolve=False)
            _overwrite(loaded, grid_overwrite, f"{spec.path}: grid_overwrite")
            _overwrite(loaded, task.overwrite, f"{spec.path}: grid_tasks[{t}].overwrite")
            resolve_interpolations(loaded)
            base = validate(loaded) if validate_tasks else None
            if base is not None:
                pin_paths(loaded.tree, base)
        except MipError as exc:
            problems.append(f"task {labels[t]}: {exc}")
            continue
        problems += [f"task {labels[t]}: {p}" for p in _space_problems(loaded, dimensions, where, validate_tasks)]
        if base is not None:
            problems += [f"task {labels[t]}: {p}" for p in _objective_problems(base, search, grid)]
        if search.sampler == "grid":
            missing = [k for k, d in dimensions.items() if d.grid_values() is None]
            if missing:
                problems.append(f"{where(missing[0])}task {labels[t]}: sampler 'grid' needs choices, integer ranges "
                                f"or a step for every key; {', '.join(missing)} is a continuous range")
        task_seed = loaded.get("training.seed", -1)
        found.append(SearchTask(labels[t], copy.deepcopy(loaded.tree), dimensions,
                                None if task_seed in (-1, None) else int(task_seed)))
    if len(set(labels)) != len(labels):
        problems.append(f"{grid.where('grid_tasks')}tasks of a search need distinct names (each task is a study): "
                        f"{', '.join(labels)}")
    if problems:
        raise ConfigError(f"grid {spec.path}: invalid search (nothing was run):\n  - " + "\n  - ".join(problems))
    return found


def _space_problems(loaded: LoadedConfig, dimensions: dict[str, Dimension], where: Any,
                    validate_tasks: bool) -> list[str]:
    """Each space key set to the values a trial may get must still be a valid config (unknown keys, types, bounds)."""
    from miprometheus.config.experiment_spec import validate

    problems: list[str] = []
    for key, dimension in dimensions.items():
        origin_text = where(key).rstrip(": ")
        source, _, line = origin_text.rpartition(":")
        origin = Origin(source, int(line)) if line.isdigit() else Origin(origin_text)
        for value in dimension.examples():
            trial = with_values(loaded, {key: value}, {key: origin})
            if not validate_tasks:
                break
            try:
                validate(trial)
            except MipError as exc:
                text = str(exc)
                reason = text.split("\n  - ", 1)[-1].replace("\n  - ", "; ").replace(where(key), "")
                problems.append(f"{where(key)}search space '{key}' = {value!r} makes the task's config invalid: "
                                + reason)
                break
    return problems


def _objective_problems(base: Any, search: SearchSettings, grid: LoadedConfig) -> list[str]:
    """The objective must be a statistic the task's validation split produces (it must have one)."""
    where = grid.where("grid_settings.search.objective.statistic") or grid.where("grid_settings.search")
    if "validation" not in base.splits:
        return [f"{where}the search reads its objective from validation statistics, and the task's config has no "
                "validation section"]
    from miprometheus.workers.components import build_problem

    try:
        problem = build_problem(base.splits["validation"])
    except MipError as exc:
        return [f"the validation problem cannot be built to check the objective: {exc}"]
    produced = ["loss", *problem.statistic_definitions]
    statistic = search.objective.statistic
    if statistic not in produced:
        return [f"{where}objective statistic '{statistic}' is not produced by the validation problem "
                f"{type(problem).__name__} (it produces {', '.join(produced)})"]
    return []


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
                    pin_paths(loaded.tree, validate(loaded))
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
                suffix = (f"_{slug('-'.join(str(v) for v in combo))}" if len(combos) > 1 else "") + f"_r{r}"
                experiment_id = f"{len(experiments):03d}_{slug(label)}{suffix}"
                combo_key = json.dumps(sweep, sort_keys=True, default=str)
                planned[(label, combo_key, r)] = experiment_id
                after = planned.get((task.after, combo_key, r)) if task.after is not None else None
                experiments.append(PlannedExperiment(experiment_id, label, t, r, sweep, config, seed,
                                                     after=after, after_folder_keys=list(task.after_folder_keys)))
    if problems:
        raise ConfigError(f"grid {spec.path}: invalid task configs (nothing was run):\n  - " + "\n  - ".join(problems))
    return experiments

"""The converter: an original config, merged as the original merged it, becomes this project's config.

One pass over the original's sections (``training``, ``validation``, ``testing``, ``model``): names and keys are
mapped by the tables of :mod:`miprometheus.migrate.tables`, values whose meaning differs are converted, the
trainer's defaults the original applied are written where the config relied on them, and everything is recorded
in the :class:`~miprometheus.migrate.report.Report`. Keys the original never read are dropped, saying so.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miprometheus.config.loader import Origin, deep_merge
from miprometheus.config.yaml_loader import shown
from miprometheus.errors import ConfigError
from miprometheus.migrate import tables as T
from miprometheus.migrate.original import OriginalConfig, OriginalFile, locate_default, merge_first_wins, read_chain
from miprometheus.migrate.report import Report

#: the original's index files are read whole: a larger one is refused
MAX_INDEX_FILE_BYTES = 10_000_000
#: PyYAML (YAML 1.1), which the original read its configs with, took these plain words for booleans
YAML11_BOOLEANS = {**dict.fromkeys(("yes", "Yes", "YES", "on", "On", "ON"), True),
                   **dict.fromkeys(("no", "No", "NO", "off", "Off", "OFF"), False)}
#: where each section's keys stand in a converted config
SECTION_ORDER = {
    "training": ("problem", "sampler", "dataloader", "optimizer", "gradient_clipping", "curriculum_learning",
                 "terminal_conditions", "seed"),
    "validation": ("problem", "sampler", "dataloader", "interval", "num_batches", "every_epoch"),
    "testing": ("problem", "sampler", "dataloader", "num_batches", "seed", "settings"),
}
SPLITS = ("training", "validation", "testing")
#: problem parameters that are paths (read relative to the config file here, to the working directory there)
PATH_KEYS = ("data_folder", "vocabulary_from", "features_file", "cache_folder")


def display(path: Path, root: Path) -> str:
    """A path as reports show it: relative to ``root`` when it lies below."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The leaves of a nested mapping as (dotted key, value); lists and empty mappings are leaves."""
    if not isinstance(tree, dict) or not tree:
        return [(prefix, tree)] if prefix else []
    leaves = []
    for key, value in tree.items():
        leaves += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return leaves


def get_dotted(tree: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def declared_parameters(kind: str, name: str) -> dict[str, Any]:
    """The parameters a component here declares, read from its source (nothing imported)."""
    from miprometheus import catalogue

    try:
        return {p.name: p for p in catalogue.describe(kind, name).params}
    except ConfigError:
        return {}


def _is_generated(problem: str) -> bool:
    from miprometheus import catalogue

    info = catalogue.available("problems").get(problem)
    return info is not None and ".algorithmic" in info.module


@dataclass
class Converted:
    """A converted config: its tree, the files it needs beside it (name -> text), and its report."""

    tree: dict[str, Any]
    report: Report
    extra_files: dict[str, str] = field(default_factory=dict)


class Converter:
    """Converts one merged original config (see :func:`convert_config`)."""

    def __init__(self, original: OriginalConfig, root: Path, report: Report, output: Path) -> None:
        self.original = original
        self.root = root
        self.report = report
        self.output = output
        self.out: dict[str, Any] = {}
        self.extra_files: dict[str, str] = {}
        self.limits: dict[str, Any] = {}  # the trainer's limits the config set
        self.partial_interval: Any = None
        self.seeds: dict[str, dict[str, Any]] = {}  # section -> seed_numpy / seed_torch
        self.problems: dict[str, str] = {}  # section -> problem name here
        self.multi_tests: Any = None
        self.max_test_episodes: Any = None

    # --- the pass ----------------------------------------------------------------------------------------
    def run(self, trainer: str | None) -> dict[str, Any]:
        tree = self.original.tree
        for key, value in tree.items():
            if key not in T.CONFIG_SECTIONS:
                self._ignored(str(key), value, "it is not a section the original read")
        for section in SPLITS:
            if section in tree:
                self._split(section, tree[section])
        trainer = trainer or self._infer_trainer()
        self.report.trainer = trainer
        if "model" in tree:
            self._model(tree["model"])
        if "training" in tree:
            self._trainer_defaults(trainer)
        self._seeds()
        self._testing_extras()
        self._yaml11_booleans(self.out)
        return self._ordered()

    def _infer_trainer(self) -> str:
        problem = self.problems.get("training")
        generated = problem is not None and _is_generated(problem)
        self.report.notes.append(f"trainer: {'online' if generated else 'offline'}, as the training problem "
                                 f"{'is generated' if generated else 'is a dataset'} (--trainer chooses the other)")
        return "online" if generated else "offline"

    # --- report helpers -------------------------------------------------------------------------------------
    def _ignored(self, key: str, value: Any, why: str = "") -> None:
        for leaf, _ in flatten(value, key) or [(key, value)]:
            self.report.drop(leaf, f"the original ignored it{' (' + why + ')' if why else ''}")

    def _path(self, key: str, value: Any) -> Any:
        """A relative path of the original was relative to the directory it ran in: written absolute."""
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            return value
        resolved = str((self.root / value).resolve())
        self.report.convert(key, f"{shown(value)} is relative to the directory the original ran in (--root): "
                                 f"{resolved}")
        return resolved

    # --- sections -------------------------------------------------------------------------------------------
    def _split(self, name: str, section: Any) -> None:
        """A training, validation or testing section: the keys the three share, then the section's own."""
        if not isinstance(section, dict):
            self.report.missing(name, "the section is not a mapping")
            return
        own = {"training": self._training_key, "validation": self._validation_key, "testing": self._testing_key}
        for key, value in sorted(section.items(), key=lambda item: item[0] != "problem"):  # the batch size first
            full = f"{name}.{key}"
            if key == "problem":
                self._problem(name, value)
            elif key == "sampler":
                self._sampler(name, value)
            elif key == "dataloader":
                self._dataloader(name, value)
            elif key == "cuda":
                self.report.drop(full, T.DEVICE)
            elif key in ("seed_numpy", "seed_torch") and name != "validation":  # it seeded training and testing
                self.seeds.setdefault(name, {})[key] = value
            elif not own[name](full, key, value):
                self._ignored(full, value)

    def _training_key(self, full: str, key: str, value: Any) -> bool:
        if key in ("optimizer", "gradient_clipping"):
            put(self.out, full, copy.deepcopy(value))
        elif key == "terminal_conditions":
            self._limits(value)
        elif key == "curriculum_learning":
            self._curriculum(value)
        elif key == "terminal_condition":
            self._ignored(full, value, "its trainers read training.terminal_conditions; the run went to the "
                                       "trainer's defaults")
        else:
            return False
        return True

    def _validation_key(self, full: str, key: str, value: Any) -> bool:
        if key == "partial_validation_interval":
            self.partial_interval = value
            return True
        return False

    def _testing_key(self, full: str, key: str, value: Any) -> bool:
        if key == "multi_tests":
            self.multi_tests = value
            return True
        return False

    def _limits(self, value: Any) -> None:
        if not isinstance(value, dict):
            self._ignored("training.terminal_conditions", value, "not a mapping")
            return
        for key, limit in value.items():
            full = f"training.terminal_conditions.{key}"
            if key in ("loss_stop", "episode_limit", "epoch_limit"):
                self.limits[key] = limit
            elif key in T.MISSPELT_LIMITS:
                self.report.drop(full, f"the original ignored it: not {T.MISSPELT_LIMITS[key]}; the run went to the "
                                       "trainer's default")
            else:
                self._ignored(full, limit)

    def _curriculum(self, value: Any) -> None:
        if not isinstance(value, dict):
            self._ignored("training.curriculum_learning", value, "not a mapping")
            return
        interval = value.get("interval")
        if interval is not None and (not isinstance(interval, int) or interval <= 0):
            for leaf, _ in flatten(value, "training.curriculum_learning"):
                self.report.drop(leaf, f"interval {shown(interval)}: the original's curriculum was off")
            return
        curriculum = {}
        for key, setting in value.items():
            full = f"training.curriculum_learning.{key}"
            if key in ("initial_max_sequence_length", "must_finish"):
                curriculum[key] = setting
            elif key != "interval":
                self._ignored(full, setting)
        if interval is not None:
            batch = get_dotted(self.out, "training.problem.batch_size", 64)
            size = interval * batch if isinstance(batch, int) else None
            if size is not None:
                put(self.out, "training.problem.size", size)
                self.report.convert("training.curriculum_learning.interval",
                                    f"{interval} episodes -> training.problem.size {size} ({interval} x batch "
                                    f"{batch}): here the longest sequence grows by one item per epoch")
        self.report.notes.append("curriculum learning grows the longest sequence by one item per epoch here, up to "
                                 "max_sequence_length: what the original intended (its own stayed frozen after a "
                                 "regression of February 2019)")
        put(self.out, "training.curriculum_learning", curriculum)

    def _sampler(self, section: str, value: Any) -> None:
        full = f"{section}.sampler"
        if value in (None, {}):
            return  # the original's default: no sampler
        if not isinstance(value, dict):
            self.report.missing(full, f"{shown(value)} is not a sampler section")
            return
        name = value.get("name")
        for key in value:
            if key not in ("name", "indices"):
                self._ignored(f"{full}.{key}", value[key])
        if name in T.WHOLE_SAMPLERS:
            replacement = T.WHOLE_SAMPLERS[name]
            if replacement is None:
                self.report.drop(full, f"{name} over the whole split: here a training split is shuffled every epoch "
                                       "(and validation and testing read in order) without a sampler")
            else:
                put(self.out, full, dict(replacement))
                self.report.convert(full, f"{name} over the whole split -> {replacement['name']} indices "
                                          f"{replacement['indices']!r}")
            return
        if name not in T.SUBSET_SAMPLERS:
            self.report.missing(full, f"the sampler {shown(name)} has no equivalent here (only "
                                      f"{' and '.join(T.SUBSET_SAMPLERS)})")
            return
        put(self.out, f"{full}.name", name)
        put(self.out, f"{full}.indices", self._indices(f"{full}.indices", value.get("indices")))

    def _indices(self, key: str, value: Any) -> Any:
        """The original's indices: a list (``[a, b]``: a range), or a string ``"[a b]"`` / ``"a b c"`` or a file
        holding one line of such numbers."""
        if not isinstance(value, str):
            return value
        text, source = value, None
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.root / path
        if path.is_file():
            if path.stat().st_size > MAX_INDEX_FILE_BYTES:
                raise ConfigError(f"{self.original.where(key)}: the index file {path} is larger than "
                                  f"{MAX_INDEX_FILE_BYTES:,} bytes (the limit)")
            text, source = path.read_text(errors="replace").split("\n", 1)[0], path
        try:
            numbers = [int(n) for n in text.replace("[", " ").replace("]", " ").replace(",", " ").split()]
        except ValueError:
            self.report.missing(key, f"{shown(value)} is neither indices nor an index file (the original used no "
                                     "sampler then)")
            return value
        if len(numbers) == 2:
            self.report.convert(key, f"{shown(value)} -> [{numbers[0]}, {numbers[1]}] (a range [start, end))")
            return numbers
        if source is None:
            converted = ",".join(str(n) for n in numbers)
            self.report.convert(key, f"{shown(value)} -> {shown(converted)} (indices separated by commas)")
            return converted
        name = f"{self.output.stem}.{key.split('.')[0]}_indices.txt"
        self.extra_files[name] = ",".join(str(n) for n in numbers) + "\n"
        self.report.convert(key, f"the index file {source} (numbers separated by spaces) -> {name} beside the "
                                 "converted config (separated by commas)")
        return name

    def _dataloader(self, section: str, value: Any) -> None:
        full = f"{section}.dataloader"
        if not isinstance(value, dict):
            self._ignored(full, value, "not a mapping")
            return
        for key, setting in value.items():
            if key in T.DATALOADER_KEYS:
                put(self.out, f"{full}.{key}", setting)
            elif key == "shuffle":
                self.report.drop(f"{full}.shuffle", "here the training split is shuffled every epoch (seeded) and "
                                                    "validation and testing are read in order; a sampler chooses "
                                                    "another order")
            elif key == "batch_sampler" and setting is None:
                self.report.drop(f"{full}.batch_sampler", "null: the original's default")
            elif key == "batch_sampler":
                self.report.missing(f"{full}.batch_sampler", "a batch sampler has no equivalent here")
            else:
                self._ignored(f"{full}.{key}", setting)

    # --- components --------------------------------------------------------------------------------------
    def _name(self, kind: str, name: Any, key: str) -> str | None:
        """This project's name of an original component, or None (reported) when there is none."""
        from miprometheus import catalogue

        names, absent = (T.PROBLEM_NAMES, T.PROBLEMS_NOT_HERE) if kind == "problems" else (T.MODEL_NAMES,
                                                                                          T.MODELS_NOT_HERE)
        if not isinstance(name, str):
            self.report.missing(key, f"{shown(name)} is not a {kind[:-1]} name")
            return None
        if name in absent:
            self.report.missing(key, f"{name}: {absent[name]}")
            return None
        if name in names:
            self.report.convert(key, f"{name} -> {names[name]}")
            return names[name]
        available = catalogue.available(kind)
        if name in available:
            return name
        folded = {n.lower().replace("_", ""): n for n in available}
        if name.lower().replace("_", "") in folded:
            ours = folded[name.lower().replace("_", "")]
            self.report.convert(key, f"{name} -> {ours}")
            return ours
        self.report.missing(key, f"there is no {kind[:-1]} {name} here (mip list {kind})")
        return None

    def _apply(self, kind: str, name: str, values: dict[str, Any], where: str, target: str,
               table: dict[str, T.Rule] | None, common: dict[str, T.Rule], report: Report) -> None:
        """Map a component's keys (``where``: the original's section, ``target``: the section here) by ``table``;
        without a table, keys this project declares under the same name are kept."""
        declared = declared_parameters(kind, name)
        for key, value in flatten({k: v for k, v in values.items() if k != "name"}):
            full = f"{where}.{key}"
            rule = (table or {}).get(key) or common.get(key)
            if rule is None:
                if key in declared:
                    put(self.out, f"{target}.{key}", self._path(full, value) if key in PATH_KEYS else value)
                elif table is not None:
                    report.drop(full, f"the original ignored it (its {name} did not read it)")
                else:
                    report.missing(full, f"no parameter of this name here; the original's {name} is mapped by name "
                                         "only: check what it set", blocking=False)
                continue
            if isinstance(rule, T.Rename):
                ours = rule.to or key
                report.rename(full, f"{target}.{ours}")
                put(self.out, f"{target}.{ours}", self._path(full, value) if ours in PATH_KEYS else value)
            elif isinstance(rule, T.Drop):
                report.drop(full, rule.why)
            elif isinstance(rule, T.NoEquivalent):
                if value in rule.unless:
                    report.drop(full, f"{shown(value)}, what the {name} here does: {rule.why}")
                else:
                    report.missing(full, f"{shown(value)}: {rule.why}", rule.blocking)
            else:
                getattr(self, f"_convert_{rule.how}")(full, value, values, target, rule.to, report)

    def _problem(self, section: str, values: Any) -> None:
        key = f"{section}.problem"
        if not isinstance(values, dict):
            self.report.missing(key, f"{shown(values)} is not a problem section")
            return
        name = self._name("problems", values.get("name"), f"{key}.name")
        if name == "CLEVR":
            variant = get_dotted(values, "settings.dataset_variant", "CLEVR")
            if T.CLEVR_VARIANTS.get(variant) is None:
                self.report.missing(f"{key}.settings.dataset_variant", f"{shown(variant)} has no equivalent here")
            else:
                name = T.CLEVR_VARIANTS[variant]
        if name is None:
            put(self.out, f"{key}.name", values.get("name"))
            return
        self.problems[section] = name
        put(self.out, f"{key}.name", name)
        values = dict(values)
        if "max_test_episodes" in values:
            episodes = values.pop("max_test_episodes")
            if section == "testing":
                self.max_test_episodes = episodes
            else:
                self.report.drop(f"{key}.max_test_episodes", "the original ignored it (only its tester read it)")
        table = T.PROBLEM_TABLES.get(name)
        if table is None and _is_generated(name):
            table = {param: T.Rename() for param in declared_parameters("problems", name)}
            table["cuda"] = T.Drop(T.DEVICE)
        self._apply("problems", name, values, key, key, table, {}, self.report)
        if name in ("SortOfCLEVR", "ShapeColorQuery") and "split" not in values:
            split = {"training": "train", "validation": "validation", "testing": "test"}[section]
            put(self.out, f"{key}.split", split)
            self.report.default(f"{key}.split", f"{split} (the original's problem had no default: it needed one)")

    def _model(self, values: Any) -> None:
        if not isinstance(values, dict):
            self.report.missing("model", f"{shown(values)} is not a model section")
            return
        original_name = values.get("name")
        name = self._name("models", original_name, "model.name")
        if name is None:
            put(self.out, "model.name", original_name)
            return
        put(self.out, "model.name", name)
        for key, value in T.MODEL_NAME_VALUES.get(original_name, {}).items():
            put(self.out, f"model.{key}", value)
            self.report.convert("model.name", f"{original_name} is {name} with {key}: {value}")
        values = dict(values)
        if "load" in values:
            self._load(values.pop("load"))
        self._apply("models", name, values, "model", "model", T.MODEL_TABLES.get(name), T.MODEL_COMMON, self.report)
        declared = declared_parameters("models", name)
        problem = self.problems.get("training") or self.problems.get("testing")
        for key, (value, why) in T.MODEL_ORIGINAL_VALUES.get(name, {}).items():
            if key in declared and get_dotted(self.out, f"model.{key}") is None:
                put(self.out, f"model.{key}", value)
                self.report.default(f"model.{key}", f"{shown(value)}: {why}")
        if name == "RelationalNetwork" and problem in T.QUESTION_CODE_SIZES:
            put(self.out, "model.question_code_size", T.QUESTION_CODE_SIZES[problem])
        raw = problem in T.RAW_IMAGE_PROBLEMS or get_dotted(self.out, "training.problem.images") == "raw"
        if name in ("MAC", "SMAC") and raw and "image_encoder" in declared:
            put(self.out, "model.image_encoder", "conv4")
            self.report.default("model.image_encoder", "conv4: the original's MAC read raw images through its own "
                                                       "CNN; here the RN paper's 4-layer CNN")

    def _load(self, value: Any) -> None:
        if not value:
            self.report.drop("model.load", f"{shown(value)}: no weights to load")
            return
        path = value if not isinstance(value, str) else self._path("model.load", value)
        put(self.out, "model.init_from", {"path": path})
        self.report.convert("model.load", "-> model.init_from.path: the weights the model starts from")

    # --- conversions named by the tables --------------------------------------------------------------------
    def _convert_controller_name(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                                 report: Report) -> None:
        ours = T.CONTROLLER_NAMES.get(value) if isinstance(value, str) else None
        if ours is None:
            report.missing(key, f"the controller {shown(value)} has no equivalent here")
            return
        put(self.out, f"{target}.{to}", ours)
        report.convert(key, f"{value} -> {target}.{to}: {ours}")

    def _convert_inclusive_index(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                                 report: Report) -> None:
        section = target.split(".")[0]
        if key.endswith(".stop_index"):
            return  # converted with start_index
        if key.endswith(".start_index"):
            value = [value, values.get("stop_index")]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            report.missing(key, f"{shown(value)} is not an inclusive range [first, last]")
            return
        if "sampler" in self.original.tree.get(section, {}):
            report.missing(key, "the split has a sampler too: the original's sampler indexed the selected range; "
                                "set the sampler's indices by hand", blocking=True)
            return
        indices = [value[0], value[1] + 1]
        put(self.out, f"{section}.sampler", {"name": "SubsetRandomSampler" if section == "training" else
                                             "SubsetSequentialSampler", "indices": indices})
        report.convert(key, f"{value} (inclusive: last included) -> {section}.sampler.indices {indices} "
                            "(end excluded)")

    def _convert_vqa_split(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                           report: Report) -> None:
        ours = T.SPLIT_NAMES.get(value, value)
        put(self.out, f"{target}.{to}", ours)
        if ours != value:
            report.convert(key, f"{shown(value)} -> {shown(ours)}")

    def _convert_questions_to_scenes(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                                     report: Report) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            report.missing(key, f"{shown(value)} is not a number of questions")
            return
        scenes = max(1, math.ceil(value / T.QUESTIONS_PER_SCENE))
        put(self.out, f"{target}.{to}", scenes)
        report.convert(key, f"{value} questions -> {target}.{to} {scenes}: the original counted questions, here "
                            f"scenes are counted, each asking 7 questions of each of its 2-6 objects "
                            f"({T.QUESTIONS_PER_SCENE} on average)")

    def _convert_raw_images(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                            report: Report) -> None:
        ours = "raw" if value else "features"
        put(self.out, f"{target}.{to}", ours)
        report.convert(key, f"{shown(value)} -> {target}.{to}: {ours}")

    def _convert_to_model(self, key: str, value: Any, values: dict[str, Any], target: str, to: str,
                          report: Report) -> None:
        put(self.out, to, value)
        report.convert(key, f"-> {to}: the models here embed the words themselves")

    # --- what the original's workers did -------------------------------------------------------------
    def _trainer_defaults(self, trainer: str) -> None:
        defaults = T.TRAINER_DEFAULTS[trainer]
        limits = {}
        compared = "the validation loss of the one batch" if trainer == "online" else "the whole validation loss"
        loss_stop = self.limits.get("loss_stop")
        if loss_stop is None:
            loss_stop = defaults["loss_stop"]
            self.report.default("training.terminal_conditions.loss_stop",
                                f"{loss_stop:g}: the {trainer} trainer's default (compared with {compared})")
        limits["loss_stop"] = loss_stop
        for key in ("episode_limit", "epoch_limit"):
            value, default = self.limits.get(key), defaults[key]
            full = f"training.terminal_conditions.{key}"
            required = default is not None  # the trainer's own limit (episodes online, epochs offline)
            if value is None:
                if required:
                    limits[key] = default
                    self.report.default(full, f"{default:,}: the {trainer} trainer's default")
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                limits[key] = value  # mip check names it
            elif value > 0:
                limits[key] = value
            elif required:
                self.report.missing(full, f"{value}: the {trainer} trainer refused it (it needs a positive limit)")
            elif value == 0 and key == "episode_limit":
                limits[key] = 1
                self.report.convert(full, "0 -> 1: the offline trainer stopped after the first episode")
            else:
                self.report.drop(full, f"{value}: off, as without it here")
        put(self.out, "training.terminal_conditions", limits)
        self._validation_defaults(trainer, compared)

    def _validation_defaults(self, trainer: str, compared: str) -> None:
        if "validation" not in self.original.tree:
            self.report.missing("validation", f"the {trainer} trainer needed a validation section (it stopped "
                                              "without one)")
            return
        interval = self.partial_interval
        key = "validation.partial_validation_interval"
        if trainer == "online":
            if interval is None:
                interval = T.TRAINER_DEFAULTS["online"]["partial_validation_interval"]
                self.report.default("validation.interval", f"{interval}: the online trainer validated every "
                                                           f"{interval} episodes by default")
            elif not isinstance(interval, int) or interval <= 0:
                self.report.missing(key, f"{shown(interval)}: the online trainer refused it (it needs a positive "
                                         "interval)")
                return
            else:
                self.report.convert(key, f"{interval} -> validation.interval {interval}")
            put(self.out, "validation.interval", interval)
            put(self.out, "validation.num_batches", 1)
            put(self.out, "validation.every_epoch", False)
            self.report.default("validation.num_batches", "1: the original's partial validation used ONE batch, the "
                                                          "same one every time, not the whole split")
            self.report.default("validation.every_epoch", "false: the online trainer validated at no epoch's end")
            self.report.notes.append("the online trainer ended with one validation on the whole validation set; "
                                     "here the last validation is one batch like the others (mip test measures the "
                                     "whole test split)")
            return
        put(self.out, "validation.every_epoch", True)
        self.report.default("validation.every_epoch", f"true: the offline trainer validated the whole set at each "
                                                      f"epoch's end ({compared} decides loss_stop)")
        if isinstance(interval, int) and interval > 0:
            put(self.out, "validation.interval", interval)
            self.report.convert(key, f"{interval} -> validation.interval {interval}, on the whole split: the "
                                     "original validated one batch every interval and the whole set at epoch ends; "
                                     "one validation section here does both on the whole split")
        elif interval is not None:
            self.report.drop(key, f"{shown(interval)}: off (the offline trainer's default)")

    def _seeds(self) -> None:
        for section, seeds in self.seeds.items():
            chosen = seeds.get("seed_torch", seeds.get("seed_numpy"))
            picked = "seed_torch" if "seed_torch" in seeds else "seed_numpy"
            if chosen == -1 and section == "testing":
                self.report.drop(f"testing.{picked}", "-1: a drawn seed; here the test data follow the training seed")
                continue
            put(self.out, f"{section}.seed", chosen)
            what = " and ".join(f"{k} {shown(v)}" for k, v in seeds.items())
            self.report.convert(f"{section}.{picked}", f"{what} -> {section}.seed {shown(chosen)}: one seed here "
                                                       "seeds Python, NumPy and torch")

    def _testing_extras(self) -> None:
        if self.max_test_episodes is not None:
            episodes = self.max_test_episodes
            if episodes == -1:
                self.report.drop("testing.problem.max_test_episodes", "-1: the whole test set, as without it here")
            else:
                put(self.out, "testing.num_batches", episodes)
                self.report.rename("testing.problem.max_test_episodes", "testing.num_batches")
        tests = self.multi_tests
        if tests is None:
            return
        lengths = {len(v) for v in tests.values() if isinstance(v, list)} if isinstance(tests, dict) else set()
        if (not isinstance(tests, dict) or not tests or len(lengths) != 1
                or not all(isinstance(v, list) for v in tests.values())):
            self.report.missing("testing.multi_tests", "the original needed lists of one length (its tester refused "
                                                       "this)")
            return
        problem = self.problems.get("testing")
        settings: dict[str, Any] = {}
        for i in range(lengths.pop()):
            scratch = Converter(self.original, self.root, Report(""), self.output)
            values = {"name": problem, **{key: values[i] for key, values in tests.items()}}
            table = (T.PROBLEM_TABLES.get(problem or "")
                     or {k: T.Rename() for k in declared_parameters("problems", problem or "")})
            scratch._apply("problems", problem or "", values, "testing.problem", "problem", table, {}, scratch.report)
            label = "_".join(f"{key}_{values[key]}" for key in tests)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:60] or f"setting_{i}"
            if name in settings:
                name = f"setting_{i}"
            settings[name] = scratch.out
        put(self.out, "testing.settings", settings)
        self.report.convert("testing.multi_tests", f"{len(settings)} tests -> testing.settings "
                                                   f"{', '.join(settings)}: mip test runs each into its own folder")

    def _yaml11_booleans(self, tree: dict[str, Any], prefix: str = "") -> None:
        for key, value in tree.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict):
                self._yaml11_booleans(value, full + ".")
            elif isinstance(value, str) and value in YAML11_BOOLEANS:
                tree[key] = YAML11_BOOLEANS[value]
                self.report.convert(full, f"{value} -> {str(tree[key]).lower()}: the original's YAML reader "
                                          "(YAML 1.1) took it for a boolean")

    def _ordered(self) -> dict[str, Any]:
        """The converted tree, its sections and their keys in a fixed, readable order."""
        out: dict[str, Any] = {}
        for section in (*SPLITS, "model"):
            if section not in self.out:
                continue
            values = self.out[section]
            order = SECTION_ORDER.get(section, ("name",))
            out[section] = {**{k: values[k] for k in order if k in values},
                            **{k: v for k, v in values.items() if k not in order}}
        return out


def convert_config(original: OriginalConfig, trainer: str | None, root: Path, output: Path,
                   report: Report) -> Converted:
    """Convert a merged original config into this project's format, recording every change in ``report``."""
    converter = Converter(original, root, report, output)
    tree = converter.run(trainer)
    report.files = [display(path, root) for path in original.files]
    return Converted(tree, report, converter.extra_files)


# --- grid files -----------------------------------------------------------------------------------------------
@dataclass
class ConvertedGrid:
    """A converted grid file and its tasks' configs (file names relative to the grid file)."""

    tree: dict[str, Any]
    report: Report
    tasks: dict[str, Converted]


def convert_grid(grid: OriginalFile, trainer: str | None, root: Path, output: Path, report: Report) -> ConvertedGrid:
    """Convert an original grid file: each task's comma-separated configs, with the grid's and the task's
    overwrites (the original's precedence: task overwrite > grid_overwrite > the task's configs, the first listed
    winning), become one self-contained config beside the grid file; the grid keeps its settings."""
    tree = grid.tree
    report.files = [display(grid.path, root)]
    settings = tree.get("grid_settings") or {}
    grid_trainer = None
    out_settings: dict[str, Any] = {}
    for key, value in (settings.items() if isinstance(settings, dict) else []):
        if key in ("experiment_repetitions", "max_concurrent_runs"):
            out_settings[key] = value
        elif key == "trainer" and value in T.TRAINER_SCRIPTS:
            grid_trainer = T.TRAINER_SCRIPTS[value]
            report.drop("grid_settings.trainer", f"{value}: its defaults are written into each task's config")
        elif key == "trainer":
            report.missing("grid_settings.trainer", f"{shown(value)} is not one of the original's trainers "
                                                    f"({', '.join(T.TRAINER_SCRIPTS)})")
        else:
            for leaf, _ in flatten(value, f"grid_settings.{key}") or [(f"grid_settings.{key}", value)]:
                report.drop(leaf, "the original ignored it")
    for key in tree:
        if key not in T.GRID_SECTIONS:
            for leaf, _ in flatten(tree[key], str(key)) or [(str(key), tree[key])]:
                report.drop(leaf, "the original ignored it (it is not a section of its grid files)")
    if trainer is None:
        trainer = grid_trainer or "offline"
        if grid_trainer is None:
            report.notes.append("trainer: offline, the original grid trainer's default (grid_settings.trainer or "
                                "--trainer chooses the other)")
    elif grid_trainer is not None and grid_trainer != trainer:
        report.notes.append(f"--trainer {trainer} replaces the grid's {grid_trainer} trainer")
    report.trainer = trainer
    raw_tasks = tree.get("grid_tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise ConfigError(f"{grid.path}:{grid.lines.get(('grid_tasks',), 1)}: grid_tasks must be a non-empty list of "
                          "tasks, each with default_configs (a comma-separated string of config files)")
    grid_overwrite = tree.get("grid_overwrite") or {}
    tasks: dict[str, Converted] = {}
    out_tasks = []
    folder = output.with_suffix("")
    for i, task in enumerate(raw_tasks):
        where = f"{grid.path}:{grid.lines.get(('grid_tasks', str(i)), 1)}"
        if not isinstance(task, dict) or not isinstance(task.get("default_configs"), str):
            raise ConfigError(f"{where}: grid_tasks[{i}] needs default_configs, a comma-separated string of config "
                              "files")
        names = [n for n in task["default_configs"].replace(" ", "").split(",") if n]
        holder = OriginalFile(grid.path, {}, {("default_configs",): grid.lines.get(("grid_tasks", str(i),
                                                                                   "default_configs"), 1)})
        chain = read_chain([locate_default(Path(name), holder, root) for name in names], root)
        merged = merge_first_wins(chain)
        grid_origin = {k: Origin(f"{grid.path}: grid_overwrite") for k, _ in flatten(grid_overwrite)}
        deep_merge(merged.tree, merged.origins, copy.deepcopy(grid_overwrite), grid_origin)
        overwrite = task.get("overwrite") or {}
        deep_merge(merged.tree, merged.origins, copy.deepcopy(overwrite),
                   {k: Origin(f"{grid.path}: grid_tasks[{i}].overwrite") for k, _ in flatten(overwrite)})
        for key in task:
            if key not in ("default_configs", "overwrite"):
                report.drop(f"grid_tasks.{i}.{key}", "the original ignored it")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(names[0]).stem if names else f"task{i}")
        name = f"{i:02d}_{stem}"
        task_output = folder / f"{name}.yaml"
        task_report = Report(f"{display(grid.path, root)} grid_tasks[{i}] ({', '.join(names)})",
                             display(task_output, root))
        converted = convert_config(merged, trainer, root, task_output, task_report)
        if grid_overwrite or overwrite:
            task_report.notes.append("grid_overwrite and the task's overwrite are merged into this config (the "
                                     "original's precedence: the task's overwrite, then grid_overwrite, then its "
                                     "configs)")
        tasks[f"{folder.name}/{name}.yaml"] = converted
        out_tasks.append({"name": name, "default_configs": f"{folder.name}/{name}.yaml"})
        report.tasks.append(task_report)
    out = {"grid_tasks": out_tasks}
    if out_settings:
        out["grid_settings"] = out_settings
    return ConvertedGrid(out, report, tasks)

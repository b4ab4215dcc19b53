"""Validate a whole experiment configuration before any work starts (DESIGN §3)."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from miprometheus.config.loader import LoadedConfig
from miprometheus.config.schema import (
    NOT_COERCIBLE,
    Errors,
    as_dict,
    build,
    coerce,
    resolve_path,
    section_values,
    type_name,
    unknown_key,
)
from miprometheus.config.sections import SECTIONS, TOP_LEVEL, Curriculum, InitFrom, TrackingSection
from miprometheus.errors import ConfigError, MipError
from miprometheus.params import bound_error, is_required, not_finite
from miprometheus.registry import get as registry_get


def _read_only(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only view of a copy: a spec's mappings cannot be changed through the spec."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Split:
    """One validated data split (training, validation or testing)."""

    name: str
    section: Any
    problem_cls: type
    problem_params: Any


@dataclass(frozen=True)
class NamedCall:
    """A class chosen by name (optimizer) and its validated keyword arguments."""

    name: str
    cls: type
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class SchedulerSpec:
    """``training.scheduler``: a learning-rate scheduler, its keyword arguments and when it steps."""

    name: str
    cls: type
    kwargs: Mapping[str, Any]
    step_every: Literal["epoch", "episode", "validation"] = "epoch"


@dataclass(frozen=True)
class CurriculumSpec:
    """``training.curriculum_learning``: the trainer's settings and the problem's ``CurriculumParams``."""

    settings: Curriculum
    params: Any


@dataclass(frozen=True)
class ModelSpec:
    """``model``: the class, the values the config sets, and where its weights start from.

    ``values`` holds the config's values only: those the problem supplies are added by
    :func:`finalize_model_params` once the problem is built.
    """

    name: str
    cls: type
    values: Mapping[str, Any]
    init_from: InitFrom | None = None  # model.init_from: weights to start from (not applied on resume)
    freeze: tuple[str, ...] = ()  # model.freeze: submodules left untrained


@dataclass(frozen=True)
class ExperimentSpec:
    """A configuration that passed validation: every component class and its typed parameters.

    Complete when :func:`validate` builds it and never changed afterwards; what is known only once
    the components are built (the model's finalized parameters) is returned, not stored back.
    """

    config: LoadedConfig
    splits: Mapping[str, Split]
    model: ModelSpec | None = None
    optimizer: NamedCall | None = None
    scheduler: SchedulerSpec | None = None
    curriculum: CurriculumSpec | None = None
    #: testing.settings: the named test settings, each a whole testing split (the testing section changed by the
    #: setting's values), in the config's order. Empty: the testing section is the one test.
    test_settings: Mapping[str, Split] = field(default_factory=_read_only)
    #: ``tracking``: where the experiment is tracked besides its folder (an MLflow run); None: nowhere
    tracking: TrackingSection | None = None

    @property
    def training(self) -> Any:
        return self.splits["training"].section if "training" in self.splits else None

    def tests(self) -> dict[str | None, Split]:
        """What ``mip test`` runs: each named setting, or the testing section itself (named None)."""
        if self.test_settings:
            return dict(self.test_settings)
        return {None: self.splits["testing"]} if "testing" in self.splits else {}

    @staticmethod
    def section_tree(split: Split) -> dict[str, Any]:
        """A split's effective section as a config mapping (its problem with every parameter)."""
        section = as_dict(split.section)
        section.pop("settings", None)
        section["problem"] = {"name": split.problem_cls.__name__, **as_dict(split.problem_params)}
        return section

    def effective_tree(self, model_params: Any = None) -> dict[str, Any]:
        """The effective configuration: re-running it reproduces the experiment.

        ``model_params``: the finalized parameters of the model built (:func:`finalize_model_params`), so
        that the values the problem supplied are recorded; None: the config's model values alone.
        """
        tree: dict[str, Any] = {}
        if self.config.tree.get("description"):
            tree["description"] = self.config.tree["description"]
        for name, split in self.splits.items():
            section = self.section_tree(split)
            if name == "testing" and self.test_settings:
                section["settings"] = {setting: self.section_tree(s) for setting, s in self.test_settings.items()}
            if name == "training":
                section["optimizer"] = {"name": self.optimizer.name, **self.optimizer.kwargs}
                if self.scheduler:
                    section["scheduler"] = {"name": self.scheduler.name, "step_every": self.scheduler.step_every,
                                            **self.scheduler.kwargs}
                if self.curriculum is not None:
                    section["curriculum_learning"] = {**as_dict(self.curriculum.settings),
                                                      **as_dict(self.curriculum.params)}
            tree[name] = section
        if self.model is not None:
            values = as_dict(model_params) if model_params is not None else dict(self.model.values)
            tree["model"] = {"name": self.model.name, **values}
            if self.model.init_from is not None:
                tree["model"]["init_from"] = as_dict(self.model.init_from)
            if self.model.freeze:
                tree["model"]["freeze"] = list(self.model.freeze)
        if self.tracking is not None and self.tracking.mlflow is not None:
            tree["tracking"] = as_dict(self.tracking)  # a resume and a test log to the same run
        return tree


def _component(kind: str, data: Any, prefix: str, config: LoadedConfig, errors: Errors) -> type | None:
    if not isinstance(data, dict):
        errors.append(f"{config.where(prefix)}'{prefix}' must be a section with a 'name', got {data!r}")
        return None
    name = data.get("name")
    if not isinstance(name, str):
        errors.append(f"{config.where(prefix)}missing '{prefix}.name': which {kind[:-1]} to use")
        return None
    try:
        return registry_get(kind, name)
    except MipError as exc:
        errors.append(f"{config.where(prefix + '.name')}{exc}")
        return None


def _signature_kwargs(cls: type, data: dict[str, Any], prefix: str, config: LoadedConfig, errors: Errors,
                      skip: tuple[str, ...], reserved: tuple[str, ...] = (), bounds: type | None = None
                      ) -> dict[str, Any]:
    """Check keyword arguments of a torch class against its signature and the types of its defaults, the
    bounds ``bounds`` declares for the common ones (``optimizers.OptimizerArguments``), and refuse NaN and
    infinities in any of them."""
    signature = inspect.signature(cls.__init__)
    declared = {f.name: f for f in dataclasses.fields(bounds)} if bounds is not None else {}
    accepted = {n: p for n, p in signature.parameters.items()
                if n not in ("self", *skip) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    kwargs = {}
    for key, value in data.items():
        if key == "name" or key in reserved:
            continue
        full = f"{prefix}.{key}"
        if key not in accepted:
            errors.append(unknown_key(config, full, list(accepted) + list(reserved)))
            continue
        default = accepted[key].default
        why = bound_error(declared[key], value) if key in declared else None
        if why is None and any(not_finite(item) for item in (value if isinstance(value, list) else [value])):
            why = f"must be a finite number, got {value!r}"
        if why:
            errors.append(f"{config.where(full)}'{full}' {why}")
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                errors.append(f"{config.where(full)}'{full}' must be true or false, got {value!r}")
            else:
                kwargs[key] = value
        elif default is None or default is inspect.Parameter.empty:
            kwargs[key] = value
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            result = coerce(value, float if isinstance(default, float) else int | float)
            if result is NOT_COERCIBLE or isinstance(value, bool):
                errors.append(f"{config.where(full)}'{full}' must be a number, got {value!r}")
            else:
                kwargs[key] = result
        elif isinstance(default, tuple) and isinstance(value, list):
            if len(value) != len(default):
                errors.append(f"{config.where(full)}'{full}' must be a list of {len(default)} values (like the "
                              f"default {list(default)!r}), got {value!r}")
            else:
                kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in data]
    for name in missing:
        errors.append(f"{config.where(prefix)}missing required value '{prefix}.{name}' ({cls.__name__})")
    return kwargs


def _named(kind: str, getter: Any, data: Any, prefix: str, config: LoadedConfig, errors: Errors,
           skip: tuple[str, ...], reserved: tuple[str, ...] = (), bounds: type | None = None) -> NamedCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        errors.append(f"{config.where(prefix)}'{prefix}' must be a section with a 'name' ({kind})")
        return None
    try:
        cls = getter(data["name"])
    except MipError as exc:
        errors.append(f"{config.where(prefix + '.name')}{exc}")
        return None
    before = len(errors)
    kwargs = _signature_kwargs(cls, data, prefix, config, errors, skip, reserved, bounds)
    return NamedCall(data["name"], cls, _read_only(kwargs)) if len(errors) == before else None


def from_problem_fields(model_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(model_cls.Params) if f.metadata.get("from_problem")}


def validate(config: LoadedConfig, required: tuple[str, ...] = ("training", "model")) -> ExperimentSpec:
    """Validate the whole tree against the schemas of the components it names; raise one ConfigError."""
    errors = Errors()
    tree = config.tree
    for key in tree:
        if key not in TOP_LEVEL:
            errors.append(unknown_key(config, key, TOP_LEVEL))
    if tree.get("description") is not None and not isinstance(tree["description"], str):
        errors.append(f"{config.where('description')}'description' must be a string, got {tree['description']!r}")
    for key in required:
        if key not in tree:
            errors.append(f"missing section '{key}' (in {', '.join(config.files) or 'the config'})")
    splits: dict[str, Split] = {}
    test_settings: dict[str, Split] = {}
    optimizer = scheduler = curriculum = None
    for name, section_cls in SECTIONS.items():
        if name not in tree:
            continue
        section = build(section_cls, tree[name], name, config, errors)
        if section is None:
            continue
        problem_cls = _component("problems", section.problem, f"{name}.problem", config, errors)
        if problem_cls is None:
            continue
        params = build(problem_cls.Params, section.problem, f"{name}.problem", config, errors, ignore=("name",))
        _check_data_settings(name, section, problem_cls, config, errors)
        if params is not None:
            _evaluation_size(name, section, problem_cls, params)
            _check_training_only(name, section.problem, config, errors)
            splits[name] = Split(name, section, problem_cls, params)
        if name == "training":
            optimizer, scheduler, curriculum = _validate_training(section, problem_cls, config, errors)
        if name == "testing" and section.settings is not None:
            test_settings = _validate_test_settings(tree["testing"], config, errors)
    model = _validate_model(tree["model"], config, errors) if "model" in tree else None
    tracking = _validate_tracking(tree["tracking"], config, errors) if tree.get("tracking") is not None else None
    spec = ExperimentSpec(config, _read_only(splits), model, optimizer, scheduler, curriculum,
                          _read_only(test_settings), tracking)
    if "training" in spec.splits:
        _validate_training_needs(spec, config, errors)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    return spec


def _validate_model(data: Any, config: LoadedConfig, errors: Errors) -> ModelSpec | None:
    """``model``: its class, the values the config sets (those the problem supplies may be left out),
    ``init_from`` and ``freeze``."""
    model_cls = _component("models", data, "model", config, errors)
    if model_cls is None:
        return None
    init_from, freeze = _validate_transfer(data, config, errors)
    from_problem = from_problem_fields(model_cls)
    # Checked, not built: the values the problem supplies are known once it is built (finalize_model_params).
    valid = section_values(model_cls.Params, data, "model", config, errors, ignore=("name", *TRANSFER_KEYS),
                           allow_missing=from_problem) or {}
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(model_cls.Params) if not is_required(f) and f.name not in from_problem}
    values = {**defaults, **valid}
    return ModelSpec(data["name"], model_cls, _read_only(values), init_from, freeze)


def _validate_tracking(data: Any, config: LoadedConfig, errors: Errors) -> TrackingSection | None:
    """``tracking``: checked like any section; a relative ``sqlite:///FILE`` is made absolute (relative to the file
    that set it, as every path of a config), and MLflow must be installed (the extra ``miprometheus[mlflow]``)."""
    section = build(TrackingSection, data, "tracking", config, errors)
    if section is None or section.mlflow is None:
        return section
    uri = section.mlflow.uri
    if uri.lower().startswith("sqlite:///") and uri[len("sqlite:///"):] not in ("", ":memory:"):
        path = uri[len("sqlite:///"):]
        if not path.startswith("/"):
            section.mlflow.uri = "sqlite:///" + resolve_path(path, config, "tracking.mlflow.uri")
    if importlib.util.find_spec("mlflow") is None:
        errors.append(f"{config.where('tracking.mlflow')}'tracking.mlflow' logs to MLflow, which is not installed: "
                      "pip install miprometheus[mlflow] (or drop the tracking: tracking.mlflow=null)")
    return section


#: problem keys meant for the training split only (augmentation): refused in validation and testing, where
#: they would make the scores depend on random draws.
TRAINING_ONLY_PROBLEM_KEYS = ("random_crop_padding", "random_horizontal_flip")


def _check_training_only(name: str, problem: dict[str, Any], config: LoadedConfig, errors: Errors) -> None:
    if name == "training":
        return
    for key in TRAINING_ONLY_PROBLEM_KEYS:
        if problem.get(key):
            errors.append(f"{config.where(f'{name}.problem.{key}')}'{name}.problem.{key}' is training "
                          "augmentation: set it in the training section only")


def _check_data_settings(name: str, section: Any, problem_cls: type, config: LoadedConfig, errors: Errors) -> None:
    """Settings of a split that its problem or its loader would silently ignore: a sampler of a generated
    problem (which has no stored samples to choose from), and the DataLoader's worker settings without workers."""
    if section.sampler is not None and getattr(problem_cls, "is_generator", False):
        errors.append(f"{config.where(f'{name}.sampler')}'{name}.sampler' cannot choose samples of "
                      f"{problem_cls.__name__}, which generates them: remove it (size sets how many there are)")
    loader = section.dataloader
    if loader.num_workers == 0:
        for key, value in (("prefetch_factor", loader.prefetch_factor),
                           ("persistent_workers", loader.persistent_workers or None)):
            if value is not None:
                errors.append(f"{config.where(f'{name}.dataloader.{key}')}'{name}.dataloader.{key}' needs worker "
                              f"processes ({name}.dataloader.num_workers is 0)")


def _evaluation_size(name: str, section: Any, problem_cls: type, params: Any) -> None:
    """A generated problem's validation and testing splits default to ``evaluation_size`` samples, not to the
    nominal training epoch (a million samples would make every validation last minutes)."""
    if name != "training" and getattr(problem_cls, "is_generator", False) and "size" not in section.problem:
        params.size = problem_cls.evaluation_size


def _validate_training_needs(spec: ExperimentSpec, config: LoadedConfig, errors: Errors) -> None:
    """What training needs beyond each key's own type: checked here so that ``mip check`` accepts exactly
    what ``mip train`` accepts."""
    training = spec.training
    limits = training.terminal_conditions
    if limits.episode_limit is None and limits.epoch_limit is None:
        errors.append(f"{config.where('training.terminal_conditions')}set training.terminal_conditions.episode_limit "
                      "or epoch_limit: training needs a limit")
    if training.early_stopping.patience and "validation" not in config.tree:
        errors.append(f"{config.where('training.early_stopping')}early stopping needs a 'validation' section")
    if spec.curriculum is not None:
        split = spec.splits["training"]
        why = split.problem_cls.check_curriculum(split.problem_params, spec.curriculum.params)
        if why:
            errors.append(f"{config.where('training.curriculum_learning')}{why}")


SETTING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _validate_test_settings(testing: dict[str, Any], config: LoadedConfig, errors: Errors) -> dict[str, Split]:
    """``testing.settings``: each named setting is the testing section deep-merged with the setting's values."""
    settings = testing["settings"]
    found: dict[str, Split] = {}
    if not isinstance(settings, dict) or not settings:
        errors.append(f"{config.where('testing.settings')}'testing.settings' must map setting names to sections "
                      f"(e.g. length_20: {{problem: {{max_sequence_length: 20}}}}), got {settings!r}")
        return found
    base = {key: value for key, value in testing.items() if key != "settings"}
    for name, values in settings.items():
        prefix = f"testing.settings.{name}"
        if not isinstance(name, str) or not SETTING_NAME.fullmatch(name):
            errors.append(f"{config.where(prefix)}test setting name {name!r} must be letters, digits, '_', '.' or '-' "
                          "(it names a folder)")
            continue
        if values is False:  # dropped: a config removes a setting that a default config declares
            continue
        if values is None:
            values = {}
        if not isinstance(values, dict):
            errors.append(f"{config.where(prefix)}'{prefix}' must be a section (a mapping), or false to drop "
                          f"it, got {values!r}")
            continue
        if "settings" in values:
            errors.append(f"{config.where(prefix + '.settings')}test settings do not nest ('{prefix}.settings')")
            continue
        merged = _deep_merge(base, values)
        section = build(SECTIONS["testing"], merged, prefix, config, errors)
        if section is None:
            continue
        problem_cls = _component("problems", section.problem, f"{prefix}.problem", config, errors)
        if problem_cls is None:
            continue
        params = build(problem_cls.Params, section.problem, f"{prefix}.problem", config, errors, ignore=("name",))
        if params is not None:
            _evaluation_size("testing", section, problem_cls, params)
            found[name] = Split(f"testing.{name}", section, problem_cls, params)
    return found


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge key by key, anything else replaces (neither is changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


TRANSFER_KEYS = ("init_from", "freeze")  # reserved in the model section: they configure the trainer, not the model


def _validate_transfer(data: dict[str, Any], config: LoadedConfig,
                       errors: Errors) -> tuple[InitFrom | None, tuple[str, ...]]:
    """``model.init_from`` (a path, or {path, checkpoint, prefix, strict}) and ``model.freeze`` (submodule names).

    Whether the names exist and the weights fit is known only once the model is built: the trainer
    checks that before the experiment folder is created.
    """
    init_from, names = None, ()
    init = data.get("init_from")
    if init is not None:
        if isinstance(init, str):
            init = {"path": init}
        if not isinstance(init, dict):
            errors.append(f"{config.where('model.init_from')}'model.init_from' must be a path or a mapping "
                          f"{{path, checkpoint, prefix, strict}}, got {init!r}")
        else:
            prefix = init.get("prefix")
            if prefix is not None and not (isinstance(prefix, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in prefix.items())):
                errors.append(f"{config.where('model.init_from.prefix')}'model.init_from.prefix' must map "
                              f"checkpoint key prefixes to model key prefixes (strings), got {prefix!r}")
            else:
                built = build(InitFrom, init, "model.init_from", config, errors)
                if isinstance(built, InitFrom):
                    init_from = built
    freeze = data.get("freeze")
    if freeze is not None:
        if isinstance(freeze, str):
            freeze = [freeze]
        if not isinstance(freeze, list) or not all(isinstance(n, str) and n for n in freeze):
            errors.append(f"{config.where('model.freeze')}'model.freeze' must be a list of submodule names, "
                          f"got {freeze!r}")
        else:
            names = tuple(dict.fromkeys(freeze))
    return init_from, names


def _validate_training(section: Any, problem_cls: type, config: LoadedConfig, errors: Errors
                       ) -> tuple[NamedCall | None, SchedulerSpec | None, CurriculumSpec | None]:
    """The optimizer, the scheduler and the curriculum of the training section."""
    from miprometheus.optimizers import OptimizerArguments, SchedulerArguments, get_optimizer, get_scheduler

    scheduler = curriculum = None
    optimizer = _named("optimizer", get_optimizer, section.optimizer, "training.optimizer", config, errors,
                       skip=("params",), bounds=OptimizerArguments)
    if section.scheduler is not None:
        named = _named("scheduler", get_scheduler, section.scheduler, "training.scheduler", config, errors,
                       skip=("optimizer",), reserved=("step_every",), bounds=SchedulerArguments)
        every = _step_every(section.scheduler, named, config, errors)
        if named is not None and every is not None:
            scheduler = SchedulerSpec(named.name, named.cls, named.kwargs, every)
    if optimizer is not None and (section.scheduler is None or scheduler is not None):
        _check_torch_accepts(optimizer, scheduler, config, errors)
    if section.curriculum_learning is not None:
        curriculum_cls = getattr(problem_cls, "CurriculumParams", None)
        if curriculum_cls is None:
            errors.append(f"{config.where('training.curriculum_learning')}problem {problem_cls.__name__} "
                          "does not support curriculum learning (remove 'training.curriculum_learning')")
            return optimizer, scheduler, curriculum
        data = dict(section.curriculum_learning)
        trainer_keys = {f.name for f in dataclasses.fields(Curriculum)}
        problem_keys = {f.name for f in dataclasses.fields(curriculum_cls)}
        for key in list(data):
            if key not in trainer_keys | problem_keys:
                errors.append(unknown_key(config, f"training.curriculum_learning.{key}",
                                          sorted(trainer_keys | problem_keys)))
                del data[key]
        settings = build(Curriculum, {k: v for k, v in data.items() if k in trainer_keys},
                         "training.curriculum_learning", config, errors)
        params = build(curriculum_cls, {k: v for k, v in data.items() if k in problem_keys},
                       "training.curriculum_learning", config, errors)
        if settings is not None and params is not None:
            curriculum = CurriculumSpec(settings, params)
    return optimizer, scheduler, curriculum


def _step_every(data: dict[str, Any], named: NamedCall | None, config: LoadedConfig, errors: Errors
                ) -> str | None:
    """When the scheduler steps. ReduceLROnPlateau steps on a loss: at each validation with the validation loss
    (its default when there is a validation section), or every episode with the training loss (read back every
    episode); at an epoch end it has no loss of its own to read, so ``epoch`` is refused for it. A scheduler
    stepped at validations needs a validation section."""
    from miprometheus.optimizers import is_plateau

    key = "training.scheduler.step_every"
    plateau = named is not None and is_plateau(named.cls)
    validating = "validation" in config.tree
    every = data.get("step_every", "validation" if plateau and validating else "epoch")
    if every not in ("epoch", "episode", "validation"):
        errors.append(f"{config.where(key)}'{key}' must be one of 'epoch', 'episode', 'validation', got {every!r}")
        return None
    if plateau and every == "epoch":
        place = config.where(key) if "step_every" in data else config.where("training.scheduler")
        errors.append(f"{place}ReduceLROnPlateau steps on a loss: set '{key}' to validation (the validation loss; "
                      "needs a validation section) or episode (the training loss, read back every episode), not "
                      "epoch" + ("" if "step_every" in data else " (the default without a validation section)"))
        return None
    if every == "validation" and not validating:
        errors.append(f"{config.where(key)}'{key}' is validation, and the config has no validation section: the "
                      "scheduler would never step (add a validation section, or step every epoch or episode)")
        return None
    if plateau and named.kwargs.get("mode", "min") != "min":
        errors.append(f"{config.where('training.scheduler.mode')}'training.scheduler.mode' must be 'min': "
                      "ReduceLROnPlateau is given a loss, which training lowers")
        return None
    return every


def _check_torch_accepts(optimizer: NamedCall, scheduler: SchedulerSpec | None, config: LoadedConfig,
                         errors: Errors) -> None:
    """What only torch knows about its own arguments: the optimizer and the scheduler are built on a dummy
    parameter and stepped once, and a refusal is reported at the key it names (or the section)."""
    from miprometheus.optimizers import try_build

    failure = try_build(optimizer.cls, dict(optimizer.kwargs), scheduler.cls if scheduler else None,
                        dict(scheduler.kwargs) if scheduler else None)
    if failure is None:
        return
    part, exc = failure
    call = optimizer if part == "optimizer" else scheduler
    key = _key_named_in(str(exc), call.kwargs)
    full = f"training.{part}.{key}" if key else f"training.{part}"
    arguments = ", ".join(f"{k}={v!r}" for k, v in call.kwargs.items()) or "no arguments"
    errors.append(f"{config.where(full)}'{full}' is refused by torch {call.name} ({arguments}): "
                  f"{type(exc).__name__}: {exc}")


#: how torch's messages name some keyword arguments
_ARGUMENT_WORDS = {"lr": ("learning rate", "lr"), "betas": ("beta",), "eps": ("epsilon", "eps")}


def _key_named_in(message: str, kwargs: Mapping[str, Any]) -> str | None:
    """The keyword argument a torch error message names ("Invalid learning rate: -1.0" -> lr), or None."""
    text = message.lower()
    for key in sorted(kwargs, key=len, reverse=True):
        if any(re.search(rf"\b{re.escape(word)}\b", text)
               for word in _ARGUMENT_WORDS.get(key, (key.lower(), key.lower().replace("_", " ")))):
            return key
    return None


def finalize_model_params(spec: ExperimentSpec, default_values: dict[str, Any],
                          overrides: dict[str, Any] | None = None, where: str = "model") -> Any:
    """The model's parameters: config values, then the problem's values for what the config left out.

    ``overrides`` (a test's ``model_overrides``, located at ``where``) change some of them for that test only.
    The spec is not changed: pass the result to :meth:`ExperimentSpec.effective_tree` to record it.
    """
    assert spec.model is not None
    model_cls = spec.model.cls
    values = {**spec.model.values, **(overrides or {})}
    if overrides:
        hints = typing.get_type_hints(model_cls.Params)
        unknown = sorted(key for key in overrides if key not in hints)
        if unknown:
            raise ConfigError(f"{spec.config.where(where)}'{where}' names {', '.join(map(repr, unknown))}, which "
                              f"model {model_cls.__name__} does not have (it has {', '.join(hints)})")
    missing, supplied = [], set()
    for f in dataclasses.fields(model_cls.Params):
        if f.name in values or not f.metadata.get("from_problem"):
            continue
        if f.name in default_values:
            values[f.name], supplied = default_values[f.name], supplied | {f.name}
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            missing.append(f.name)
    if missing:
        problem = spec.splits["training"].problem_cls.__name__ if "training" in spec.splits else "the problem"
        raise ConfigError(f"{spec.config.where('model')}model {model_cls.__name__} needs "
                          f"{', '.join(repr(m) for m in missing)}, which {problem} does not provide "
                          f"(it provides {', '.join(sorted(default_values)) or 'nothing'}): "
                          f"set model.{missing[0]} in the config, or choose a model made for this problem")
    hints = typing.get_type_hints(model_cls.Params)
    fields = {f.name: f for f in dataclasses.fields(model_cls.Params)}
    for key in list(values):
        result = coerce(values[key], hints[key])
        if result is NOT_COERCIBLE:
            raise ConfigError(f"{spec.config.where('model.' + key)}'model.{key}' must be {type_name(hints[key])}, "
                              f"got {values[key]!r}")
        why = bound_error(fields[key], result)
        if why:  # the config's own values were checked by the schema: a problem's value, or a test's override
            if key in supplied:
                raise ConfigError(f"{spec.config.where('model')}'model.{key}' {why}, the value the problem "
                                  f"supplies: set model.{key} in the config, or choose a model made for this problem")
            place = where if key in (overrides or {}) else "model"
            raise ConfigError(f"{spec.config.where(f'{place}.{key}')}'{place}.{key}' {why}")
        values[key] = result
    try:
        return model_cls.Params(**values)
    except (TypeError, ValueError) as exc:
        place = spec.config.where(where if overrides else 'model')
        raise ConfigError(f"{place}invalid model parameters: {exc}") from None


__all__ = ["CurriculumSpec", "ExperimentSpec", "ModelSpec", "NamedCall", "SchedulerSpec", "Split",
           "finalize_model_params", "validate"]

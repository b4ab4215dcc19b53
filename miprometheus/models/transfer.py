"""Transfer: start a model from another run's weights (``model.init_from``) and freeze submodules (``model.freeze``).

Loading: a checkpoint file, or an experiment folder (its ``models/model_best.pt``, or ``model_last.pt``
with ``checkpoint: last``), read through :func:`miprometheus.checkpoint.load_checkpoint`. A ``prefix``
mapping renames the checkpoint's keys (``{"encoder.": "question_encoder."}``); with a mapping only
the mapped keys are loaded, so one trained submodule can seed a larger model. ``strict`` (the default)
requires every model key that the mapping targets to be loaded with the same shape.

Freezing: the parameters of the named submodules get ``requires_grad = False``, are left out of the
optimizer (so they have no optimizer state, and weight decay cannot move them), and the submodules
stay in eval mode while the rest trains, so that BatchNorm statistics and Dropout inside them do not
change: a frozen submodule computes exactly what it computed in the run it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from miprometheus.checkpoint import load_checkpoint
from miprometheus.config.sections import InitFrom
from miprometheus.errors import CheckpointError, ConfigError
from miprometheus.layout import BEST, LAST, MODELS_DIR

CHECKPOINT_FILES = {"best": BEST, "last": LAST}
_LISTED = 8  # keys shown per kind of problem in an error message


def checkpoint_path(init: InitFrom, where: str = "") -> Path:
    """The checkpoint file that ``init`` names: the file itself, or the chosen checkpoint of an experiment folder."""
    path = Path(init.path)
    if path.is_dir():
        file = path / MODELS_DIR / CHECKPOINT_FILES[init.checkpoint]
        if not file.is_file():
            raise CheckpointError(f"{where}model.init_from: {path} has no {file.relative_to(path)} "
                                  "(is it an experiment folder whose training wrote a checkpoint?)")
        return file
    if not path.exists():
        raise CheckpointError(f"{where}model.init_from: {path} does not exist "
                              "(a checkpoint file or an experiment folder)")
    return path


def map_keys(state: dict[str, torch.Tensor], prefix: dict[str, str]) -> dict[str, str]:
    """Model key -> checkpoint key, after renaming by the longest matching prefix (all keys when no mapping)."""
    if not prefix:
        return {key: key for key in state}
    sources = sorted(prefix, key=len, reverse=True)
    mapped: dict[str, str] = {}
    for key in state:
        source = next((s for s in sources if key.startswith(s)), None)
        if source is not None:
            mapped[prefix[source] + key[len(source):]] = key
    return mapped


def _listing(title: str, items: list[str]) -> str:
    more = f" (and {len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{title}: {', '.join(items[:_LISTED])}{more}"


def load_into(model: torch.nn.Module, init: InitFrom, where: str = "") -> dict[str, Any]:
    """Copy weights from ``init`` into ``model``; a CheckpointError (nothing changed) when they do not fit.

    Returns the record of what was loaded, for run_info.json.
    """
    file = checkpoint_path(init, where)
    payload = load_checkpoint(file)
    state = payload.get("model")
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}model.init_from: {file} holds no model weights")
    model_state = model.state_dict()
    mapped = map_keys(state, init.prefix)
    targets = list(init.prefix.values()) or [""]
    expected = [k for k in model_state if any(k.startswith(t) for t in targets)]
    missing = [k for k in expected if k not in mapped]
    unexpected = [f"{mapped[k]} -> {k}" if mapped[k] != k else k for k in mapped if k not in model_state]
    mismatched = [f"{k} (checkpoint {tuple(state[mapped[k]].shape)}, model {tuple(model_state[k].shape)})"
                  for k in mapped if k in model_state and state[mapped[k]].shape != model_state[k].shape]
    loadable = {k: state[source] for k, source in mapped.items()
                if k in model_state and state[source].shape == model_state[k].shape}
    problems = [_listing(title, items) for title, items in (
        ("missing in the checkpoint", missing), ("not in the model", unexpected), ("shape mismatch", mismatched))
        if items]
    source = f"{file} (model {payload.get('model_name', '?')})"
    mapping = f" with prefix mapping {init.prefix}" if init.prefix else ""
    if problems and init.strict:
        raise CheckpointError(f"{where}model.init_from: the weights of {source} do not fit model "
                              f"{type(model).__name__}{mapping}: " + "; ".join(problems)
                              + ". Fix model.init_from.prefix, or set model.init_from.strict: false "
                                "to load only the keys that fit.")
    if not loadable:
        raise CheckpointError(f"{where}model.init_from: no weight of {source} fits model {type(model).__name__}"
                              f"{mapping}" + (": " + "; ".join(problems) if problems else ""))
    model.load_state_dict(loadable, strict=False)
    return {"path": str(Path(init.path)), "checkpoint_file": str(file.resolve()),
            "source_model": payload.get("model_name"), "source_episode": payload.get("episode"),
            "prefix": dict(init.prefix), "strict": init.strict, "loaded": len(loadable),
            "skipped": sorted(set(missing) | {k for k in mapped if k not in loadable})}


def freeze(model: torch.nn.Module, names: list[str], where: str = "") -> dict[str, Any]:
    """Stop the named submodules from training (see the module docstring); the record for run_info.json."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or not n]
    if unknown:
        children = [n for n, _ in model.named_children()]
        raise ConfigError(f"{where}model.freeze: {type(model).__name__} has no submodule "
                          f"{', '.join(repr(n) for n in unknown)}; its submodules are "
                          f"{', '.join(children) or 'none'} (nested ones as 'child.grandchild')")
    frozen: dict[str, torch.nn.Parameter] = {}  # nested names ("encoder", "encoder.layer") overlap
    for name in names:
        for parameter_name, parameter in modules[name].named_parameters(prefix=name):
            frozen[parameter_name] = parameter
    if names and len({id(p) for p in frozen.values()}) == len({id(p) for p in model.parameters()}):
        raise ConfigError(f"{where}model.freeze: {', '.join(names)} hold every parameter of "
                          f"{type(model).__name__}; nothing would be trained")
    for parameter in frozen.values():
        parameter.requires_grad_(False)
    return {"modules": list(names), "parameters": list(frozen),
            "parameter_count": sum(p.numel() for p in {id(p): p for p in frozen.values()}.values())}


def set_train_mode(model: torch.nn.Module, frozen: list[str]) -> None:
    """Training mode for the model, eval mode for its frozen submodules (their BatchNorm and Dropout stay put)."""
    model.train()
    for name in frozen:
        model.get_submodule(name).eval()


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer gets: frozen ones are left out, so they have no optimizer state."""
    return [p for p in model.parameters() if p.requires_grad]


__all__ = ["checkpoint_path", "freeze", "load_into", "map_keys", "set_train_mode", "trainable_parameters"]

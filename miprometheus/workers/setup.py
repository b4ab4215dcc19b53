"""The setup of a split, the one place it is written: seed → problem → assets → model → weights → loader.

The Trainer (its training and validation splits), the Tester (each test setting) and ``mip check`` all
build what they run through :func:`set_up_split`, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from miprometheus.config.experiment_spec import ExperimentSpec, Split
from miprometheus.errors import HandshakeError
from miprometheus.models import transfer
from miprometheus.problems.assets import apply_assets, build_training_assets
from miprometheus.seeding import seed_everything
from miprometheus.workers.components import build_model, build_problem, check_fits
from miprometheus.workers.loaders import ProblemLoader
from miprometheus.workers.precision import check_precision


@dataclass
class PreparedSplit:
    """A split ready to run: its problem, loader and (when asked for) model, on the device."""

    problem: Any
    loader: ProblemLoader | None
    model: Any | None = None
    #: the assets (vocabularies, answer sets) the problem was given; None for problems without any
    assets: dict[str, Any] | None = None
    #: the precision the experiment trains (and so tests) in: "32", "bf16" or "16"
    precision: str = "32"
    #: what :func:`apply_transfer` did (``init_from``, ``frozen``), for run_info.json
    transfer: dict[str, Any] = field(default_factory=dict)
    #: True when the problem needs a training run's assets and none were given (``mip check`` reports it)
    lacks_assets: bool = False


def experiment_precision(spec: ExperimentSpec, device: torch.device) -> str:
    """The precision of the experiment: training's, or 32 when the config has no training section."""
    precision = spec.training.precision if spec.training is not None else "32"
    return check_precision(precision, device, spec.config.where("training.precision"))


def apply_transfer(spec: ExperimentSpec, model: Any, load_weights: bool = True) -> dict[str, Any]:
    """``model.init_from`` and ``model.freeze``: load the weights to start from, freeze submodules.

    ``load_weights=False`` on a resume: the run loads its own weights (and the source checkpoint may be gone
    by then). Freezing applies to both, so the optimizer has the same parameters. Returns the record of both.
    """
    record: dict[str, Any] = {}
    if spec.model.init_from is not None and load_weights:
        record["init_from"] = transfer.load_into(model, spec.model.init_from, spec.config.where("model.init_from"))
    if spec.model.freeze:
        record["frozen"] = transfer.freeze(model, spec.model.freeze, spec.config.where("model.freeze"))
    return record


def set_up_split(spec: ExperimentSpec, split: Split, device: torch.device | str, *, sampler_seed: int,
                 global_seed: int | None = None, data_seed: int | None = None,
                 assets: dict[str, Any] | None = None, assets_source: str = "", own_assets: bool = False,
                 assets_optional: bool = False, with_model: bool = True, resuming: bool = False,
                 model_values: dict[str, Any] | None = None, fits_model: Any = None) -> PreparedSplit:
    """Build one split of ``spec`` on ``device``.

    ``global_seed``: seed every generator first (the model's initial weights depend on it). ``data_seed``: the
    problem's own generator. ``own_assets``: build the assets from this split (the training split only; else
    ``assets`` are a training run's, ``assets_source`` saying where they were looked for when missing;
    ``assets_optional``: a problem that needs them and gets none is returned with ``lacks_assets`` and nothing
    else built). ``with_model``: build the model for this split's problem (a test's ``model_overrides``
    apply), with the transfer of ``model.init_from`` / ``model.freeze`` on the training split (weights not
    loaded when ``resuming``).

    A validation or test split runs the model the training split built, so it must fit this split's problem
    too, before anything runs: ``fits_model`` (with ``with_model=False``) is that model, checked against this
    split's problem; ``model_values`` (with ``with_model=True``) are the values the training problem supplied,
    so the model built here is the one training builds (``mip check``), not one fitted to this split.
    """
    device = torch.device(device)
    if global_seed is not None:
        seed_everything(global_seed)
    problem = build_problem(split)
    if data_seed is not None:
        problem.seed(data_seed)
    if own_assets:
        assets = build_training_assets(problem)
    if assets is None and assets_optional and problem.uses_assets:
        return PreparedSplit(problem, None, lacks_assets=True)
    apply_assets(problem, assets, assets_source)
    prepared = PreparedSplit(problem, None, assets=assets, precision=experiment_precision(spec, device))
    try:
        if with_model:
            section = split.section
            prepared.model = build_model(spec, problem, getattr(section, "model_overrides", None),
                                         f"{split.name}.model_overrides", model_values)
            if split.name == "training":
                prepared.transfer = apply_transfer(spec, prepared.model, load_weights=not resuming)
            prepared.model.to(device)
        elif fits_model is not None:
            check_fits(fits_model, problem)
    except HandshakeError as exc:
        if split.name == "training" or (model_values is None and fits_model is None):
            raise
        raise HandshakeError(f"the {split.name} split runs the model the training split builds, which does not "
                             f"fit its problem: {exc}") from None
    kind = split.name.split(".")[0]  # a test setting "testing.<name>" samples as the testing split does
    prepared.loader = ProblemLoader(problem, split.section.sampler, split.section.dataloader, sampler_seed,
                                    f"{kind}.sampler: ", device)
    return prepared


__all__ = ["PreparedSplit", "apply_transfer", "experiment_precision", "set_up_split"]

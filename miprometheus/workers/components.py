"""Building a run's components from a validated spec, and the checks of what flows between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miprometheus.config.experiment_spec import ExperimentSpec, Split, finalize_model_params
from miprometheus.data import check_values, handshake
from miprometheus.errors import ConfigError, HandshakeError


def build_problem(split: Split) -> Any:
    try:
        return split.problem_cls(split.problem_params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{split.name}.problem ({split.problem_cls.__name__}): {exc}") from None


def build_model(spec: ExperimentSpec, problem: Any, overrides: dict[str, Any] | None = None,
                where: str = "model", default_values: Mapping[str, Any] | None = None) -> Any:
    """The model, with the problem's values filled in, after the handshake with the problem.

    ``overrides``: model parameters a test changes (its ``model_overrides``, located at ``where``).
    ``default_values``: the values to fill in, when they come from another problem than the one the model
    meets (the training problem's, for the model ``mip check`` builds for a validation or test split).
    """
    values = problem.default_values if default_values is None else dict(default_values)
    params = finalize_model_params(spec, values, overrides, where)
    try:
        model = spec.model.cls(params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model ({spec.model.cls.__name__}): {exc}") from None
    check_fits(model, problem)
    return model


def check_fits(model: Any, problem: Any) -> None:
    """The handshake (DESIGN §4): the model reads what the problem's batches hold, outputs what its loss
    expects, and names its further outputs apart from the batch's keys. Raises HandshakeError."""
    handshake(problem.name, problem.output_definitions, problem.prediction_definitions,
              model.name, model.input_definitions, model.output_definitions)
    clashes = sorted(key for key in model.output_definitions
                     if key != "predictions" and key in problem.output_definitions)
    if clashes:
        names = ', '.join(map(repr, clashes))
        raise HandshakeError(f"model {model.name} outputs {names}, which problem {problem.name} "
                             "already puts in its batches: a model's further outputs need names of their own")


def check_first_batch(problem: Any, model: Any, batch: dict[str, Any], predictions: Any,
                      extras: Mapping[str, Any] | None = None) -> None:
    """DESIGN §4.3: the first real batch and output are checked against the definitions."""
    check_values(f"the first batch of problem {problem.name}", batch, problem.output_definitions)
    check_values(f"the output of model {model.name}", {"predictions": predictions, **(extras or {})},
                 model.output_definitions)


def split_output(model: Any, output: Any) -> tuple[Any, dict[str, Any]]:
    """A model's output as (predictions in float32, further outputs).

    ``forward`` returns the predictions tensor, or a dict of ``predictions`` and further outputs that the model
    declares in ``output_definitions`` (a decoder's chosen tokens, its attention): those are added to the batch
    under their names, so the problem's loss, statistics and plot can read them (DESIGN §4).
    """
    if isinstance(output, Mapping):
        if "predictions" not in output:
            raise HandshakeError(f"model {model.name} returned a dict without 'predictions' "
                                 f"(keys: {', '.join(output) or 'none'})")
        extras = {key: value for key, value in output.items() if key != "predictions"}
        undeclared = [key for key in extras if key not in model.output_definitions]
        if undeclared:
            raise HandshakeError(f"model {model.name} returned outputs {', '.join(map(repr, undeclared))} that its "
                                 "output_definitions do not declare")
        return output["predictions"].float(), extras
    return output.float(), {}


def check_declared_statistics(problem: Any, statistics: dict[str, Any]) -> None:
    """The statistics of the first batch are among those the problem declared (they fix the CSV columns)."""
    undeclared = [name for name in statistics if name not in problem.statistic_definitions]
    if undeclared:
        raise HandshakeError(f"problem {problem.name} returns statistics {', '.join(map(repr, undeclared))} that its "
                             "statistic_definitions do not declare (declared: "
                             f"{', '.join(problem.statistic_definitions) or 'none'})")


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Only the batch keys the model declares as inputs: a model cannot read ``targets`` by accident
    (a decoder trained with teacher forcing declares them)."""
    return {key: batch[key] for key in model.input_definitions if key in batch}


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """The batch's tensors on ``device``. From pinned memory (the loaders pin when the device is CUDA) the
    copy is asynchronous and overlaps the previous step; from pageable memory it is simply synchronous.
    Only host-to-device copies are made this way, which CUDA orders before the kernels that read them."""
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}

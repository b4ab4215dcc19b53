"""``torch.optim`` optimizers and learning-rate schedulers by name (``training.optimizer.name: Adam``).

Any class of ``torch.optim`` / ``torch.optim.lr_scheduler`` is available under its own name, so a
config can name whatever the installed torch offers; an unknown name gets the closest as a hint.
A class the trainer cannot drive (one that needs a closure, sparse gradients or a Python function) is
refused by name, with why. The keyword arguments are torch's own: the bounds of the common ones are
declared here once (:class:`OptimizerArguments`, :class:`SchedulerArguments`), and what only torch knows
is found by building the optimizer and scheduler when the config is validated (``experiment_spec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from miprometheus.errors import ConfigError
from miprometheus.params import param
from miprometheus.registry import unknown

#: optimizers the trainer's one forward/backward per episode cannot drive, and why
UNSUPPORTED_OPTIMIZERS = {
    "LBFGS": "it evaluates the model several times per step (optimizer.step(closure)), and the trainer runs one "
             "forward and backward pass per episode: choose Adam, AdamW, SGD, RMSprop, ...",
    "SparseAdam": "it needs sparse gradients (nn.Embedding(sparse=True)), and the models' gradients are dense: "
                  "choose Adam or AdamW",
}

#: schedulers a YAML config cannot give what they need, and why
UNSUPPORTED_SCHEDULERS = {
    "LambdaLR": "its lr_lambda is a Python function, which a config file cannot hold: choose StepLR, "
                "MultiStepLR, ExponentialLR, CosineAnnealingLR, OneCycleLR, LinearLR, ...",
    "MultiplicativeLR": "its lr_lambda is a Python function, which a config file cannot hold: choose "
                        "ExponentialLR (a constant factor per step)",
    "SequentialLR": "it takes scheduler objects, which a config file cannot hold",
    "ChainedScheduler": "it takes scheduler objects, which a config file cannot hold",
}

#: most a learning rate may be: above it every step diverges
MAX_LEARNING_RATE = 100.0


@dataclass
class OptimizerArguments:
    """Bounds of the keyword arguments that many ``torch.optim`` optimizers share (checked when given)."""

    lr: float = param(0.001, "learning rate", min=0, max=MAX_LEARNING_RATE)
    weight_decay: float = param(0.0, "weight decay (L2 penalty)", min=0)
    momentum: float = param(0.0, "momentum factor", min=0, max=1)
    dampening: float = param(0.0, "dampening of the momentum", min=0, max=1)
    eps: float = param(1e-8, "term added to the denominator", min=0)
    alpha: float = param(0.99, "smoothing constant (RMSprop)", min=0, max=1)
    betas: list[float] = param(factory=lambda: [0.9, 0.999], doc="running-average coefficients", min=0, max=1)
    lr_decay: float = param(0.0, "learning-rate decay (Adagrad)", min=0)
    rho: float = param(0.9, "running-average coefficient (Adadelta)", min=0, max=1)


@dataclass
class SchedulerArguments:
    """Bounds of the keyword arguments that many ``torch.optim.lr_scheduler`` schedulers share."""

    step_size: int = param(1, "steps between decays (StepLR)", min=1)
    T_max: int = param(1, "steps of a cosine half-period (CosineAnnealingLR)", min=1)
    T_0: int = param(1, "steps of the first restart period (CosineAnnealingWarmRestarts)", min=1)
    T_mult: int = param(1, "growth of the restart period", min=1)
    total_iters: int = param(5, "steps of a linear or constant phase", min=0)
    total_steps: int = param(1, "steps of a cycle (OneCycleLR)", min=1)
    milestones: list[int] = param(factory=list, doc="steps at which the rate decays (MultiStepLR)", min=0)
    gamma: float = param(0.1, "decay factor", min=0)
    factor: float = param(0.1, "decay factor", min=0)
    patience: int = param(10, "steps without improvement (ReduceLROnPlateau)", min=0)
    cooldown: int = param(0, "steps to wait after a decay (ReduceLROnPlateau)", min=0)
    eta_min: float = param(0.0, "lowest learning rate", min=0)
    min_lr: float = param(0.0, "lowest learning rate (ReduceLROnPlateau)", min=0)
    max_lr: float = param(0.1, "highest learning rate (OneCycleLR, CyclicLR)", min=0, max=MAX_LEARNING_RATE)


def _torch_classes(module: Any, base: type) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}


def get_optimizer(name: str) -> type:
    """A ``torch.optim`` optimizer class by name (``Adam``, ``SGD``, ...)."""
    import torch.optim

    classes = _torch_classes(torch.optim, torch.optim.Optimizer)
    if name not in classes:
        raise unknown("optimizers", name, list(classes))
    if name in UNSUPPORTED_OPTIMIZERS:
        raise ConfigError(f"optimizer {name} cannot be used: {UNSUPPORTED_OPTIMIZERS[name]}")
    return classes[name]


def get_scheduler(name: str) -> type:
    """A ``torch.optim.lr_scheduler`` class by name (``StepLR``, ``ReduceLROnPlateau``, ...)."""
    import torch.optim.lr_scheduler as sched

    classes = _torch_classes(sched, sched.LRScheduler)
    classes["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    if name not in classes:
        raise unknown("schedulers", name, list(classes))
    if name in UNSUPPORTED_SCHEDULERS:
        raise ConfigError(f"scheduler {name} cannot be used: {UNSUPPORTED_SCHEDULERS[name]}")
    return classes[name]


def is_plateau(cls: type) -> bool:
    """Whether a scheduler steps on a metric (``ReduceLROnPlateau``), not on a count of steps."""
    import torch.optim.lr_scheduler as sched

    return issubclass(cls, sched.ReduceLROnPlateau)


def try_build(optimizer_cls: type, optimizer_kwargs: dict[str, Any], scheduler_cls: type | None = None,
              scheduler_kwargs: dict[str, Any] | None = None) -> tuple[str, BaseException] | None:
    """Build the optimizer (and the scheduler on it) on one dummy parameter and take a step, as training
    will: torch's own refusals (``Invalid learning rate``, a betas of the wrong length, a step size of 0)
    then come when the config is validated. Returns ``("optimizer" | "scheduler", error)`` or None."""
    import warnings

    import torch

    # fused kernels exist on some devices only: the check runs on the CPU, the run may not
    optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "fused"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            weight = torch.nn.Parameter(torch.zeros(1))
            optimizer = optimizer_cls([weight], **optimizer_kwargs)
            weight.grad = torch.zeros(1)
            optimizer.step()
        except Exception as exc:  # noqa: BLE001 - whatever torch raises is the config's fault here
            return "optimizer", exc
        if scheduler_cls is None:
            return None
        try:
            scheduler = scheduler_cls(optimizer, **(scheduler_kwargs or {}))
            optimizer.step()
            scheduler.step(1.0) if is_plateau(scheduler_cls) else scheduler.step()
        except Exception as exc:  # noqa: BLE001
            return "scheduler", exc
    return None


__all__ = ["OptimizerArguments", "SchedulerArguments", "UNSUPPORTED_OPTIMIZERS", "UNSUPPORTED_SCHEDULERS",
           "get_optimizer", "get_scheduler", "is_plateau", "try_build"]

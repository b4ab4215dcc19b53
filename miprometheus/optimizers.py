"""``torch.optim`` optimizers and learning-rate schedulers by name (``training.optimizer.name: Adam``).

Any class of ``torch.optim`` / ``torch.optim.lr_scheduler`` is available under its own name, so a
config can name whatever the installed torch offers; an unknown name gets the closest as a hint.
"""

from __future__ import annotations

from typing import Any

from miprometheus.registry import unknown


def _torch_classes(module: Any, base: type) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}


def get_optimizer(name: str) -> type:
    """A ``torch.optim`` optimizer class by name (``Adam``, ``SGD``, ...)."""
    import torch.optim

    classes = _torch_classes(torch.optim, torch.optim.Optimizer)
    if name not in classes:
        raise unknown("optimizers", name, list(classes))
    return classes[name]


def get_scheduler(name: str) -> type:
    """A ``torch.optim.lr_scheduler`` class by name (``StepLR``, ``ReduceLROnPlateau``, ...)."""
    import torch.optim.lr_scheduler as sched

    classes = _torch_classes(sched, sched.LRScheduler)
    classes["ReduceLROnPlateau"] = sched.ReduceLROnPlateau
    if name not in classes:
        raise unknown("schedulers", name, list(classes))
    return classes[name]


__all__ = ["get_optimizer", "get_scheduler"]

"""What every image classifier draws with ``--visualize``: the input, its prediction and target, first feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

#: feature maps shown per layer (AlexNet's first layers have 64 and 192: a grid of all would be unreadable).
MAX_MAPS = 16


def prediction_title(model_name: str, batch: dict[str, Any], predictions: torch.Tensor | None, index: int) -> str:
    """``"<model>, sample i: predicted 'Seven' (p 0.98), target 'Seven'"`` from the batch's labels when it has them."""
    names = batch.get("targets_label")
    title = f"{model_name}, sample {index}"
    if predictions is not None:
        probabilities = torch.softmax(predictions[index].detach().float(), dim=-1)
        best = int(probabilities.argmax())
        title += f": predicted {best} (p {float(probabilities[best]):.2f})"
    if "targets" in batch:
        target = int(batch["targets"][index])
        label = f" '{names[index]}'" if isinstance(names, Sequence) and len(names) > index else ""
        title += f", target {target}{label}"
    return title


def classifier_figure(model_name: str, batch: dict[str, Any], predictions: torch.Tensor | None, index: int,
                      layers: Sequence[tuple[str, torch.Tensor]]) -> Any:
    """The input image of sample ``index``, its prediction and target in the title, and up to 16 maps per layer.

    ``layers`` are (name, recorded activations [B, K, h, w]) pairs from the model's ``internals``.
    """
    from miprometheus.plotting import feature_maps_figure

    maps = [(name, values[index][:MAX_MAPS]) for name, values in layers]
    return feature_maps_figure(batch["images"][index], maps, prediction_title(model_name, batch, predictions, index))


__all__ = ["MAX_MAPS", "classifier_figure", "prediction_title"]

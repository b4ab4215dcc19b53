"""What the VQA models draw with ``--visualize``: the image under an attention map, or with lines between the pairs
of regions a relation module used most; the question, and the predicted and target answers, in the title.

A region grid [h, w] covers the whole image, so a map is "upsampled" by stretching it over the image's extent
(bilinear), whatever the encoder's stride. With pre-extracted features there is no image: the grid is drawn alone.
``draw_attention`` returns the overlay artist, so per-step figures (:class:`~miprometheus.plotting.Frames`, MAC's
steps) can move it with ``set_data``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from miprometheus.models.vision.figures import prediction_title
from miprometheus.plotting import new_figure, show_image, to_numpy

#: colour map of attention overlays and grids.
ATTENTION_CMAP = "inferno"


def display_image(batch: dict[str, Any], index: int, image_encoder: str) -> torch.Tensor | None:
    """The image of sample ``index`` to draw ``[C, H, W]``, or None when the batch holds feature maps."""
    return None if image_encoder == "features" else batch["images"][index]


def answer_title(model_name: str, batch: dict[str, Any], predictions: torch.Tensor | None, index: int) -> str:
    """``"SAN, sample 2: predicted 4 (p 0.91), target 4 'yellow'"``, then the question on a second line."""
    title = prediction_title(model_name, batch, predictions, index)  # a VQA batch has answers, not targets
    if "answers" in batch:
        answers_text = batch.get("answers_text")
        word = f" '{answers_text[index]}'" if answers_text is not None and len(answers_text) > index else ""
        title += f", target {int(batch['answers'][index])}{word}"
    questions = batch.get("questions_text")
    if questions is not None and len(questions) > index:
        title += "\n" + "\n".join(textwrap.wrap(f"Q: {questions[index]}", 70))
    return title


def _canvas(image: np.ndarray | None, grid: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of what the regions are drawn over: the image's pixels, or one unit per cell."""
    return (int(image.shape[-2]), int(image.shape[-1])) if image is not None else grid


def draw_attention(ax: Any, image: Any | None, attention: Any, vmax: float | None = None) -> Any:
    """Draw ``attention`` [h, w] on ``ax``: over ``image`` [C, H, W] (stretched to it), or alone; the map's artist."""
    attention = to_numpy(attention)
    vmax = float(attention.max(initial=0.0)) if vmax is None else vmax
    vmax = vmax if vmax > 0 else 1.0
    if image is None:
        artist = ax.imshow(attention, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(attention.shape[1]))
        ax.set_yticks(range(attention.shape[0]))
        ax.tick_params(labelsize=6)
        return artist
    image = to_numpy(image)
    height, width = _canvas(image, attention.shape)
    show_image(ax, image)
    return ax.imshow(attention, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax, alpha=0.6, interpolation="bilinear",
                     extent=(-0.5, width - 0.5, height - 0.5, -0.5))


def attention_figure(image: Any | None, maps: Sequence[tuple[str, Any]], model_name: str, batch: dict[str, Any],
                     predictions: torch.Tensor | None, index: int) -> Figure:
    """One panel per named map [h, w] (each hop's attention, say), over the image when there is one."""
    figure = new_figure(max(4.6, 2.8 * len(maps)), 3.8)
    axes = figure.subplots(1, len(maps), squeeze=False)[0]
    for ax, (name, values) in zip(axes, maps):
        values = to_numpy(values)
        artist = draw_attention(ax, image, values)
        ax.set_title(f"{name} (max {float(values.max(initial=0.0)):.2f})", fontsize=8)
        if image is None:
            figure.colorbar(artist, ax=ax, fraction=0.046, pad=0.02)
    figure.suptitle(answer_title(model_name, batch, predictions, index), fontsize=9)
    return figure


def cell_centres(grid: tuple[int, int], canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the centre of every cell of ``grid`` (h, w), row by row, on a ``canvas`` (height, width)."""
    (h, w), (height, width) = grid, canvas
    rows, cols = np.divmod(np.arange(h * w), w)
    return (cols + 0.5) * width / w - 0.5, (rows + 0.5) * height / h - 0.5


def draw_pairs(ax: Any, image: Any | None, grid: tuple[int, int], pairs: Sequence[tuple[int, int]],
               weights: Sequence[float]) -> None:
    """Lines between the centres of the cells of each pair (cell indices row by row), thicker for larger weights.

    A pair of a cell with itself is a ring. Over ``image`` [C, H, W] when given, else over the bare grid.
    """
    image = None if image is None else to_numpy(image)
    height, width = _canvas(image, grid)
    if image is not None:
        show_image(ax, image)
    else:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_xticks(np.arange(width + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(height + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.8", linewidth=0.5)
        ax.set_xticks(range(width))
        ax.set_yticks(range(height))
        ax.tick_params(labelsize=6)
    x, y = cell_centres(grid, (height, width))
    largest = max(max(weights, default=0.0), 1e-12)
    colours = _colours(len(pairs))
    w = grid[1]
    for rank, ((first, second), weight, colour) in enumerate(zip(pairs, weights, colours), start=1):
        line = 0.8 + 3.2 * weight / largest
        label = f"{rank}: {divmod(first, w)}-{divmod(second, w)} {weight:.3g}"  # (row, column) of each cell
        if first == second:
            ax.plot(x[first], y[first], "o", markersize=6 + 2 * line, markerfacecolor="none",
                    markeredgecolor=colour, markeredgewidth=line, label=label)
        else:
            ax.plot([x[first], x[second]], [y[first], y[second]], "-o", color=colour, linewidth=line,
                    markersize=3, label=label)


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.85 * k / max(count - 1, 1)) for k in range(count)]


def pairs_figure(image: Any | None, grid: tuple[int, int], pairs: Sequence[tuple[int, int]],
                 weights: Sequence[float], model_name: str, batch: dict[str, Any], predictions: torch.Tensor | None,
                 index: int, what: str = "pairs") -> Figure:
    """The image (or the bare grid) with the given pairs of cells joined, and their ranked list beside it."""
    figure = new_figure(6.4, 3.8)
    ax = figure.subplots(1, 1)
    draw_pairs(ax, image, grid, pairs, weights)
    ax.set_title(f"{what} ({len(pairs)} largest)", fontsize=8)
    if pairs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    figure.suptitle(answer_title(model_name, batch, predictions, index), fontsize=9)
    return figure


__all__ = ["ATTENTION_CMAP", "answer_title", "attention_figure", "cell_centres", "display_image", "draw_attention",
           "draw_pairs", "pairs_figure"]

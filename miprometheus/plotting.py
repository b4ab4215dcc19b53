"""Figure builders shared by the components' ``plot`` methods: sequences over time, feature maps, class scores.

Everything here builds :class:`matplotlib.figure.Figure` objects with the object-oriented API: no
``pyplot``, no global backend, so a library user's own matplotlib state is never touched. A
sequence is drawn as :class:`Frames`: one Figure and an ``update(t)`` that moves it to time step
``t``, which :mod:`miprometheus.visualization` renders frame by frame into an animated GIF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

#: dots per inch of every figure: a figure of W x H inches is a W*DPI x H*DPI pixel image.
DPI = 100


def to_numpy(tensor: Any) -> np.ndarray:
    """A detached float32 NumPy copy of a tensor (on any device) or array."""
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().to("cpu", torch.float32).numpy()
    return np.asarray(tensor, dtype=np.float32)


def new_figure(width: float, height: float) -> Figure:
    """An empty Figure of ``width`` x ``height`` inches at :data:`DPI`, laid out without overlaps."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


@dataclass
class Frames:
    """Frames over time drawn on one Figure, as with matplotlib's ``FuncAnimation(blit=True)``.

    ``update(t)`` sets the figure to time step ``t`` (``0 <= t < steps``) and returns the artists it
    changed, the same ones at every step; everything else is drawn once, so a frame costs
    milliseconds instead of a whole figure. After building, the figure shows the last step.
    """

    figure: Figure
    steps: int
    update: Callable[[int], Sequence[Artist]]

    def __len__(self) -> int:
        return self.steps


@dataclass
class Panel:
    """One heat map of a sequence: ``values`` [rows, T] (rows are channels or units, columns time steps)."""

    title: str
    values: np.ndarray
    vmin: float = 0.0
    vmax: float = 1.0
    cmap: str = "viridis"
    ylabel: str = ""


@dataclass
class Snapshot:
    """A matrix that changes at every step, shown as it is at the current one: ``values`` [T, rows, columns].

    A memory over time, say (content x addresses). ``vmin``/``vmax`` None: the range of all its steps.
    """

    title: str
    values: np.ndarray
    vmin: float | None = None
    vmax: float | None = None
    cmap: str = "viridis"
    xlabel: str = ""
    ylabel: str = ""


def sequence_frames(panels: Sequence[Panel], title: str, width: float = 8.0,
                    snapshots: Sequence[Snapshot] = ()) -> Frames:
    """Frames over time: at step ``t`` every panel shows its columns ``0..t`` (later steps blank), step t marked.

    All panels share the time axis; the last frame shows whole sequences. There is one frame per
    time step (the panels' column count). ``snapshots`` are drawn above the panels, each as it is at step t.
    """
    steps = panels[0].values.shape[1]
    if any(p.values.shape[1] != steps for p in panels) or any(s.values.shape[0] != steps for s in snapshots):
        raise ValueError("every panel of a sequence needs the same number of time steps")
    # Panel heights follow their row counts (a one-row mask stays thin), within readable bounds.
    ratios = [min(max(p.values.shape[0], 2), 24) for p in panels]
    snapshot_ratios = [min(max(s.values.shape[1], 2), 24) for s in snapshots]
    figure = new_figure(width, 1.2 + 0.11 * sum(ratios + snapshot_ratios) + 0.35 * (len(panels) + len(snapshots)))
    if snapshots:
        # The snapshots do not share the panels' time axis: their columns are addresses, not steps.
        grid = figure.add_gridspec(2, 1, height_ratios=[sum(snapshot_ratios), sum(ratios)])
        snapshot_axes = grid[0].subgridspec(len(snapshots), 1, height_ratios=snapshot_ratios).subplots(
            squeeze=False)[:, 0]
        axes = grid[1].subgridspec(len(panels), 1, height_ratios=ratios).subplots(sharex=True, squeeze=False)[:, 0]
    else:
        snapshot_axes = []
        axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False,
                               gridspec_kw={"height_ratios": ratios})[:, 0]
    snapshot_images = [_draw_snapshot(figure, ax, snapshot) for ax, snapshot in zip(snapshot_axes, snapshots)]
    covers, markers = [], []
    for ax, panel in zip(axes, panels):
        rows = panel.values.shape[0]
        image = ax.imshow(panel.values, aspect="auto", interpolation="nearest", cmap=panel.cmap,
                          vmin=panel.vmin, vmax=panel.vmax)
        # The steps not seen yet are hidden under a white cover that shrinks frame by frame.
        covers.append(ax.add_patch(Rectangle((steps - 0.5, -0.5), 0.0, rows, facecolor="white", edgecolor="none")))
        markers.append(ax.axvline(steps - 1, color="red", linewidth=1.0))
        ax.set_xlim(-0.5, steps - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        if rows == 1:
            ax.set_yticks([])
        ax.set_title(panel.title, fontsize=9, loc="left")
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        figure.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    axes[-1].set_xlabel("time step", fontsize=8)
    heading = figure.suptitle(title, fontsize=10)

    def update(t: int) -> list[Artist]:
        for cover in covers:
            cover.set_x(t + 0.5)
            cover.set_width(steps - 1 - t)
        for marker in markers:
            marker.set_xdata([t, t])
        for image, snapshot in zip(snapshot_images, snapshots):
            image.set_data(snapshot.values[t])
        heading.set_text(f"{title} — time step {t} of 0..{steps - 1}")
        return [*covers, *markers, *snapshot_images, heading]

    update(steps - 1)
    return Frames(figure, steps, update)


def _draw_snapshot(figure: Figure, ax: Any, snapshot: Snapshot) -> Any:
    """Draw a snapshot's last step on ``ax`` with one colour scale for all its steps; the image artist."""
    values = snapshot.values
    vmin = float(values.min(initial=0.0)) if snapshot.vmin is None else snapshot.vmin
    vmax = float(values.max(initial=0.0)) if snapshot.vmax is None else snapshot.vmax
    vmax = vmax if vmax > vmin else vmin + 1.0
    image = ax.imshow(values[-1], aspect="auto", interpolation="nearest", cmap=snapshot.cmap, vmin=vmin, vmax=vmax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    ax.set_title(snapshot.title, fontsize=9, loc="left")
    ax.set_xlabel(snapshot.xlabel, fontsize=8)
    ax.set_ylabel(snapshot.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    figure.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    return image


def feature_maps_figure(image: Any, layers: Sequence[tuple[str, Any]], title: str, columns: int = 8) -> Figure:
    """The input image and, below it, the feature maps ``[K, h, w]`` of each named layer, ``columns`` per row."""
    image = to_numpy(image)
    maps = [(name, to_numpy(values)) for name, values in layers]
    rows_per_layer = [math.ceil(values.shape[0] / columns) for _, values in maps]
    rows = 1 + sum(rows_per_layer)
    figure = new_figure(columns * 1.05, rows * 1.15 + 0.4)
    grid = figure.add_gridspec(rows, columns)
    ax = figure.add_subplot(grid[0, : min(2, columns)])
    show_image(ax, image)
    ax.set_title("input", fontsize=8)
    row = 1
    for (name, values), layer_rows in zip(maps, rows_per_layer):
        # One colour scale per layer: maps of a layer compare with each other.
        vmin, vmax = float(values.min()), float(values.max())
        vmax = vmax if vmax > vmin else vmin + 1.0
        for k in range(values.shape[0]):
            ax = figure.add_subplot(grid[row + k // columns, k % columns])
            ax.imshow(values[k], cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}[{k}]" if k else f"{name}[0] {values.shape[1]}x{values.shape[2]}", fontsize=6,
                         loc="left")
        row += layer_rows
    figure.suptitle(title, fontsize=10)
    return figure


def classification_figure(image: Any, target: str, probabilities: Any | None, class_names: Sequence[str],
                          title: str, top: int = 3) -> Figure:
    """An image with its target class and, when given, the ``top`` predicted classes with their probabilities."""
    figure = new_figure(7.0, 3.2)
    image_ax, bars_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    if image is None:  # pre-extracted features, nothing to show
        image_ax.set_axis_off()
        image_ax.text(0.5, 0.5, "(image features)", ha="center", va="center", fontsize=9)
    else:
        show_image(image_ax, to_numpy(image))
    image_ax.set_title(f"target: {target}", fontsize=10)
    if probabilities is None:
        bars_ax.set_axis_off()
        bars_ax.text(0.5, 0.5, "no predictions", ha="center", va="center")
    else:
        probabilities = to_numpy(probabilities)
        best = np.argsort(-probabilities, kind="stable")[:top]
        labels = [class_names[i] for i in best]
        colours = ["tab:green" if name == target else "tab:red" for name in labels]
        positions = np.arange(len(best))[::-1]  # the most probable class on top
        bars_ax.barh(positions, probabilities[best], color=colours)
        bars_ax.set_yticks(positions, labels)
        bars_ax.set_xlim(0.0, 1.0)
        bars_ax.set_xlabel("predicted probability", fontsize=8)
        bars_ax.set_title(f"top-{len(best)} predictions", fontsize=10)
        for y, p in zip(positions, probabilities[best]):
            bars_ax.text(min(p + 0.02, 0.85), y, f"{p:.3f}", va="center", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def vqa_figure(image: Any | None, question: str, answer: str, probabilities: Any | None,
               answer_names: Sequence[str], title: str, top: int = 3) -> Figure:
    """An image (None: features only), its question and answer, and the ``top`` predicted answers."""
    figure = classification_figure(image, answer, probabilities, answer_names, title, top)
    figure.text(0.02, 0.02, _wrap(f"Q: {question}", 90), fontsize=8, va="bottom")
    return figure


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)) or text


def show_image(ax: Any, image: np.ndarray) -> None:
    """Draw an image [C, H, W] or [H, W] (grey-scale or RGB, values in [0, 1] or [0, 255])."""
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    elif image.ndim == 3:
        image = np.moveaxis(image, 0, -1)
    if image.min(initial=0.0) < 0.0:  # normalised (mean/std) pixels: stretch back to [0, 1] to show them
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    elif image.max(initial=0.0) > 1.0:  # bytes
        image = image / 255.0
    ax.imshow(np.clip(image, 0.0, 1.0), cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def hidden_state_frames(hidden: Any, title: str) -> Frames:
    """Frames over time of a recurrent network's hidden state ``[T, H]``: the units (rows) over the steps."""
    values = to_numpy(hidden).T  # [H, T]
    bound = max(1.0, float(np.abs(values).max(initial=0.0)))  # tanh-bounded states keep the [-1, 1] scale
    return sequence_frames([Panel(f"hidden state of the top layer ({values.shape[0]} units)", values, -bound, bound,
                                  "RdBu_r", "unit")], title)


def busiest_addresses(mass: Any, width: int) -> np.ndarray:
    """The ``width`` consecutive addresses of a ring memory (modulo N) that hold the most ``mass`` ``[N]``.

    A memory much larger than the sequence (a fixed N) is mostly empty: its plot shows only this window, in ring
    order, so a region that wraps around from address N-1 to 0 stays in one piece. Ties keep the lowest start.
    """
    mass = to_numpy(mass)
    n = mass.shape[0]
    if width >= n:
        return np.arange(n)
    totals = np.convolve(np.concatenate([mass, mass[:width - 1]]), np.ones(width), mode="valid")[:n]
    start = int(np.argmax(totals))
    return (start + np.arange(width)) % n

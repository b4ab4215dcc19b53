"""What MAC and S-MAC draw with ``--visualize``: one frame per reasoning step (as the original's).

Each frame shows the read attention ``rv_i`` over the image (stretched over it, bilinear) or, for pre-extracted
features, the attention grid alone; below it the control attention ``cv_i`` as a 1 x S strip over the question's
words; the title holds the predicted and target answers and the question, the panels the step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.artist import Artist

from miprometheus.models.vqa.figures import ATTENTION_CMAP, answer_title, draw_attention
from miprometheus.plotting import Frames, new_figure, to_numpy


def reasoning_frames(model_name: str, batch: dict[str, Any], predictions: torch.Tensor | None, index: int,
                     image: Any | None, read_attention: Any, control_attention: Any,
                     grid: tuple[int, int]) -> Frames:
    """Frames over the p steps of sample ``index``: ``read_attention`` [p, h*w], ``control_attention`` [p, S]."""
    read = to_numpy(read_attention).reshape(-1, *grid)  # [p, h, w]
    control = to_numpy(control_attention)
    steps = read.shape[0]
    length = int(batch["questions_length"][index]) if "questions_length" in batch else control.shape[1]
    control = control[:, :max(length, 1)]  # padded words have zero attention: leave them out
    words = batch["questions_text"][index].split() if "questions_text" in batch else []
    words = (words + ["?"] * control.shape[1])[:control.shape[1]]

    figure = new_figure(max(4.5, 0.7 * len(words) + 1.5), 6.0)
    image_ax, words_ax = figure.subplots(2, 1, gridspec_kw={"height_ratios": [5, 1]})
    # one colour scale for all steps, so the frames compare
    overlay = draw_attention(image_ax, image, read[-1], vmax=float(read.max(initial=0.0)))
    figure.colorbar(overlay, ax=image_ax, fraction=0.046, pad=0.02)
    strip = words_ax.imshow(control[-1:], cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0, aspect="auto",
                            interpolation="nearest")
    words_ax.set_xticks(np.arange(len(words)), words, rotation=45 if len(words) > 6 else 0, ha="right"
                        if len(words) > 6 else "center", fontsize=8)
    words_ax.set_yticks([])
    figure.colorbar(strip, ax=words_ax, fraction=0.046, pad=0.02)
    figure.suptitle(answer_title(model_name, batch, predictions, index), fontsize=9)
    image_title = image_ax.set_title("", fontsize=8)
    words_title = words_ax.set_title("", fontsize=8)

    def update(t: int) -> list[Artist]:
        overlay.set_data(read[t])
        strip.set_data(control[t:t + 1])
        image_title.set_text(f"step {t + 1} of {steps}: read attention (max {float(read[t].max()):.2f})")
        words_title.set_text(f"step {t + 1} of {steps}: control attention over the words")
        return [overlay, strip, image_title, words_title]

    update(steps - 1)
    return Frames(figure, steps, update)


__all__ = ["reasoning_frames"]

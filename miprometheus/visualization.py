"""What ``--visualize`` writes and shows: figures rendered to PNG, frames over time to animated GIFs, a window.

A component's ``plot`` returns a :class:`~matplotlib.figure.Figure`, frames over time
(:class:`~miprometheus.plotting.Frames`, or a list of Figures) or None. Figures are rendered with
the Agg canvas (no ``pyplot``, no ``matplotlib.use``): one Figure becomes ``<stem>.png``; frames
become ``<stem>.gif`` (one frame per time step) beside ``<stem>.png``, the last step. The
interactive window (``--visualize window``) is built on Tk only when asked for, where a display exists.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from miprometheus.errors import BadInputError
from miprometheus.files import atomic_write
from miprometheus.plotting import Frames

#: how long each frame of a GIF is shown, and the last one (the whole sequence) before it loops.
FRAME_MS = 400
LAST_FRAME_MS = 2000
#: the number of samples the interactive window steps through.
WINDOW_SAMPLES = 4


# --- recording ------------------------------------------------------------------------------------
def recorded_forward(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The model's predictions on ``batch`` in eval mode, without gradients, with ``model.internals`` recorded.

    Recording and the train/eval mode are restored afterwards; ``internals`` keeps what this forward
    stored until the model's next call.
    """
    was_training = model.training
    model.eval()
    model.recording = True
    try:
        with torch.no_grad():
            return model(batch)
    finally:
        model.recording = False
        model.train(was_training)


# --- rendering ------------------------------------------------------------------------------------
def render(figure: Figure) -> Image.Image:
    """The figure as an RGB image of ``figsize * dpi`` pixels, drawn by the Agg canvas."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def render_frames(frames: Frames) -> list[Image.Image]:
    """Every time step of ``frames`` as an image: the still part is drawn once, the changing artists blitted."""
    canvas = FigureCanvasAgg(frames.figure)
    moving = list(frames.update(0))
    for artist in moving:
        artist.set_animated(True)  # left out of the background
    try:
        canvas.draw()
        background = canvas.copy_from_bbox(frames.figure.bbox)
        images = []
        for t in range(frames.steps):
            canvas.restore_region(background)
            for artist in frames.update(t):
                frames.figure.draw_artist(artist)
            images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB"))  # a copy
    finally:
        for artist in moving:
            artist.set_animated(False)
    return images


def render_all(result: Figure | Frames | Sequence[Figure] | None) -> tuple[list[Image.Image], bool]:
    """Render a ``plot`` result: its images (all of the first one's size) and whether they are frames over time.

    A Figure is one image; :class:`~miprometheus.plotting.Frames` or a list of Figures are frames.
    """
    if result is None:
        return [], False
    if isinstance(result, Figure):
        return [render(result)], False
    if isinstance(result, Frames):
        images = render_frames(result)
    else:
        figures = list(result)
        if not all(isinstance(f, Figure) for f in figures):
            raise TypeError(f"plot must return a Figure, Frames, a list of Figures or None, got a list of "
                            f"{sorted({type(f).__name__ for f in figures})}")
        images = [render(figure) for figure in figures]
    if images:
        size = images[0].size
        # A GIF needs frames of one size; a plot should already give that, this only guards it.
        images = [im if im.size == size else im.resize(size) for im in images]
    return images, True


# --- files ----------------------------------------------------------------------------------------
def write_png(path: Path, image: Image.Image) -> Path:
    """Write an image as a PNG file, atomically."""
    atomic_write(path, lambda handle: image.save(handle, format="PNG"), mode="wb")
    return path


def shared_palette(frames: Sequence[Image.Image]) -> Image.Image:
    """A 256-colour palette for all frames, from the last frame in full and the others in miniature.

    One palette quantized once: quantizing every frame on its own costs 30x more and makes colours
    flicker between frames. The last frame of a sequence shows everything (thin lines, text); the
    miniatures bring in the colours of the areas that change.
    """
    last = frames[-1]
    width, height = last.size
    small = [frame.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.NEAREST)
             for frame in frames[:-1]]
    sheet = Image.new("RGB", (width, height + sum(im.size[1] for im in small)), "white")
    sheet.paste(last, (0, 0))
    y = height
    for image in small:
        sheet.paste(image, (0, y))
        y += image.size[1]
    return sheet.quantize(256)


def write_gif(path: Path, frames: Sequence[Image.Image], frame_ms: int = FRAME_MS,
              last_frame_ms: int = LAST_FRAME_MS) -> Path:
    """Write frames as an animated, looping GIF (one frame per image), atomically."""
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    palette = shared_palette(frames)
    indexed = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    atomic_write(path, lambda handle: indexed[0].save(
        handle, format="GIF", save_all=True, append_images=indexed[1:], duration=durations, loop=0),
        mode="wb")
    return path


def write_images(folder: Path, stem: str, images: Sequence[Image.Image], animated: bool) -> list[Path]:
    """``<stem>.png`` (the image, or the last frame) and, for frames, ``<stem>.gif``; the paths written."""
    if not images:
        return []
    paths = []
    if animated:
        paths.append(write_gif(folder / f"{stem}.gif", images))
    paths.append(write_png(folder / f"{stem}.png", images[-1]))
    return paths


def render_sample(problem: Any, model: Any, batch: dict[str, Any], predictions: torch.Tensor,
                  index: int) -> dict[str, tuple[list[Image.Image], bool]]:
    """The rendered figures of sample ``index``: component name -> (images, animated); empty components left out.

    Call right after the recorded forward of ``batch``: the model draws its ``internals``.
    """
    rendered = {problem.name: render_all(problem.plot(batch, index, predictions)),
                model.name: render_all(model.plot(batch, predictions, index))}
    return {name: value for name, value in rendered.items() if value[0]}


def write_sample(folder: Path, problem: Any, model: Any, batch: dict[str, Any], predictions: torch.Tensor,
                 index: int, number: int | None = None) -> list[Path]:
    """Write the figures of sample ``index`` of ``batch`` as ``sample_<number>_<Component>.png|gif``.

    ``number`` names the sample in the folder (default: ``index``). Returns the paths written.
    """
    number = index if number is None else number
    paths = []
    for name, (images, animated) in render_sample(problem, model, batch, predictions, index).items():
        paths += write_images(Path(folder), f"sample_{number}_{name}", images, animated)
    return paths


# --- the interactive window -----------------------------------------------------------------------
def require_display() -> None:
    """Raise BadInputError unless a window can be opened here (a display and Tk)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not os.environ.get("DISPLAY"):
        raise BadInputError("--visualize window needs a display, and there is none here (DISPLAY is not set); "
                            "use --visualize N to write the figures to files instead")
    if importlib.util.find_spec("tkinter") is None:
        raise BadInputError("--visualize window needs Tk (Python's tkinter module), which is not installed; "
                            "use --visualize N to write the figures to files instead")


def encode(images: Sequence[Image.Image]) -> list[bytes]:
    """Images as PNG bytes: a window keeps many frames of many samples, compressed."""
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


class Window:
    """The content of the interactive window: one image per component, sliders over samples and time steps.

    ``samples`` holds, for each sample, component name -> frames (PNG bytes, see :func:`encode`). A
    component with fewer frames than the step shows its last one (a still figure has one frame).
    Arrow keys move too: left/right over time steps, up/down over samples.
    """

    def __init__(self, figure: Figure, samples: Sequence[dict[str, list[bytes]]], title: str = "") -> None:
        from matplotlib.widgets import Slider

        if not samples:
            raise ValueError("the window needs at least one sample")
        self.figure, self.samples = figure, list(samples)
        self.names = list(dict.fromkeys(name for sample in self.samples for name in sample))
        steps = max(len(frames) for sample in self.samples for frames in sample.values())
        self.axes, self.images = [], []
        width = 1.0 / max(1, len(self.names))
        for i, name in enumerate(self.names):
            ax = figure.add_axes((i * width, 0.14, width, 0.80))
            ax.set_axis_off()
            ax.set_title(name, fontsize=9)
            self.axes.append(ax)
            self.images.append(ax.imshow(np.zeros((2, 2, 3), dtype=np.uint8)))
        if title:
            figure.suptitle(title, fontsize=10)
        # Sliders with a single value still show, and cannot move: valmax must exceed valmin.
        self.sample_slider = Slider(figure.add_axes((0.12, 0.06, 0.76, 0.03)), "sample", 0,
                                    max(len(self.samples) - 1, 1), valinit=0, valstep=1)
        self.step_slider = Slider(figure.add_axes((0.12, 0.02, 0.76, 0.03)), "time step", 0, max(steps - 1, 1),
                                  valinit=steps - 1, valstep=1)
        self.sample_slider.on_changed(lambda _: self.update())
        self.step_slider.on_changed(lambda _: self.update())
        figure.canvas.mpl_connect("key_press_event", self._on_key)
        self.update()

    @property
    def sample(self) -> int:
        return min(int(self.sample_slider.val), len(self.samples) - 1)

    @property
    def step(self) -> int:
        return int(self.step_slider.val)

    def frame(self, name: str) -> np.ndarray | None:
        """The image of component ``name`` at the sliders' sample and step (None if that sample lacks it)."""
        frames = self.samples[self.sample].get(name)
        if not frames:
            return None
        return np.asarray(Image.open(io.BytesIO(frames[min(self.step, len(frames) - 1)])).convert("RGB"))

    def update(self) -> None:
        for name, ax, image in zip(self.names, self.axes, self.images):
            data = self.frame(name)
            if data is None:
                data = np.full((2, 2, 3), 255, dtype=np.uint8)
            image.set_data(data)
            image.set_extent((-0.5, data.shape[1] - 0.5, data.shape[0] - 0.5, -0.5))
            ax.set_xlim(-0.5, data.shape[1] - 0.5)
            ax.set_ylim(data.shape[0] - 0.5, -0.5)
        self.figure.canvas.draw_idle()

    def _on_key(self, event: Any) -> None:
        moves = {"left": (self.step_slider, -1), "right": (self.step_slider, 1),
                 "down": (self.sample_slider, 1), "up": (self.sample_slider, -1)}
        if event.key in moves:
            slider, delta = moves[event.key]
            slider.set_val(min(max(slider.val + delta, slider.valmin), slider.valmax))


def show_window(samples: Sequence[dict[str, list[bytes]]], title: str) -> None:
    """Open the interactive window on Tk and wait until the user closes it."""
    require_display()
    import tkinter

    from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg, NavigationToolbar2Tk

    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        raise BadInputError(f"--visualize window: cannot open a window on display {os.environ.get('DISPLAY')!r}: "
                            f"{exc}") from None
    root.wm_title(title or "MI-Prometheus")
    figure = Figure(figsize=(12, 7), dpi=100)
    canvas = FigureCanvasTkAgg(figure, master=root)
    # Built after the Tk canvas exists, so that the sliders receive its mouse and key events.
    window = Window(figure, samples, title)
    toolbar = NavigationToolbar2Tk(canvas, root, pack_toolbar=False)
    toolbar.update()
    toolbar.pack(side=tkinter.BOTTOM, fill=tkinter.X)
    canvas.get_tk_widget().pack(side=tkinter.TOP, fill=tkinter.BOTH, expand=True)
    root.protocol("WM_DELETE_WINDOW", root.quit)
    canvas.draw()
    root.mainloop()
    del window
    root.destroy()


# --- the samples of a --visualize run ------------------------------------------------------------------
def sample_count(setting: int | str) -> int:
    """How many samples a ``--visualize`` setting draws: N, or the window's number of samples."""
    return WINDOW_SAMPLES if setting == "window" else int(setting)


def visualize_samples(problem: Any, model: Any, batches: Iterable[dict[str, Any]], count: int, device: Any,
                      folder: Path | None, title: str = "") -> list[Path]:
    """Forward batches with recording on until ``count`` samples are drawn; write their figures into
    ``folder``, or show them in the interactive window when ``folder`` is None. The paths written."""
    # The one step every pass runs (workers/step.py), with recording on and no loss: imported here, when
    # figures are asked for, so that importing this module does not import the workers.
    from miprometheus.workers.components import to_device
    from miprometheus.workers.step import run_step

    paths: list[Path] = []
    window_samples: list[dict[str, list[bytes]]] = []
    drawn = 0
    for batch in batches:
        if drawn >= count:
            break
        step = run_step(problem, model, to_device(batch, device), with_loss=False, call=recorded_forward)
        batch, predictions = step.batch, step.predictions
        # Every sample of this batch is drawn before the next forward replaces the model's internals.
        for index in range(min(int(predictions.shape[0]), count - drawn)):
            if folder is None:
                rendered = render_sample(problem, model, batch, predictions, index)
                window_samples.append({name: encode(images) for name, (images, _) in rendered.items()})
            else:
                paths += write_sample(folder, problem, model, batch, predictions, index, number=drawn)
            drawn += 1
    if folder is None and window_samples:
        show_window(window_samples, title)
    return paths

"""--visualize: model internals, the components' figures, the files written by train and test, the window."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from miprometheus import visualization as viz
from miprometheus.errors import BadInputError
from miprometheus.models.recurrent.gru import GRU
from miprometheus.models.recurrent.lstm import LSTM
from miprometheus.models.vision.lenet5 import LeNet5
from miprometheus.models.vision.simple_conv_net import SimpleConvNet
from miprometheus.plotting import Frames
from miprometheus.problems.seq_to_seq.algorithmic.reverse_recall import ReverseRecall
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall
from miprometheus.workers import runs
from miprometheus.workers.run_folder import RunOptions
from tests.conftest import CONFIGS, ROOT, SHARED_MNIST, experiment_dirs, run_mip

needs_mnist = pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")


def serial_batch(length: int, batch_size: int = 3, problem_cls: type = SerialRecall) -> tuple[object, dict]:
    problem = problem_cls(problem_cls.Params(batch_size=batch_size, min_sequence_length=length,
                                             max_sequence_length=length))
    problem.seed(0)
    return problem, problem.generate_batch(batch_size)


def lstm(hidden_size: int = 8) -> LSTM:
    return LSTM(LSTM.Params(input_item_size=10, output_item_size=8, hidden_size=hidden_size))


def mnist(batch_size: int = 4):
    from miprometheus.problems.image_to_class.mnist import MNIST

    problem = MNIST(MNIST.Params(data_folder=str(SHARED_MNIST), use_train_data=False, resize=[32, 32],
                                 batch_size=batch_size, download=False))
    return problem, problem.collate_fn([problem[i] for i in range(batch_size)])


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as image:
        assert image.format == "GIF"
        frames = []
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.asarray(image.convert("RGB")))
    return frames


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file: a truncated PNG fails here
        return image.size


# --- internals -------------------------------------------------------------------------------------
def test_internals_are_empty_unless_recording_and_reset_at_every_forward():
    model = lstm()
    _, batch3 = serial_batch(2, batch_size=3)  # T = 6
    _, batch2 = serial_batch(4, batch_size=2)  # T = 10
    model(batch3)
    assert model.internals == {} and model.recording is False
    model.recording = True
    model(batch3)
    first = model.internals
    assert first["hidden"].shape == (3, 6, 8) and not first["hidden"].requires_grad
    model(batch2)
    assert model.internals is not first  # a new dict: nothing accumulates across batches
    assert list(model.internals) == ["hidden"] and model.internals["hidden"].shape == (2, 10, 8)
    assert first["hidden"].shape == (3, 6, 8)  # what a caller kept is not overwritten
    model.recording = False
    model(batch3)
    assert model.internals == {}


def test_recorded_forward_restores_the_mode_and_each_model_records_its_internals():
    model = SimpleConvNet(SimpleConvNet.Params(height=32, width=32, num_channels=1, num_classes=10))
    model.train()
    images = {"images": torch.rand(2, 1, 32, 32)}
    predictions = viz.recorded_forward(model, images)
    assert model.training and not model.recording and not predictions.requires_grad
    assert model.internals["conv1"].shape == (2, 6, 14, 14) and model.internals["conv2"].shape == (2, 16, 5, 5)
    lenet = LeNet5()
    viz.recorded_forward(lenet, images)
    assert lenet.internals["C1"].shape == (2, 6, 28, 28) and lenet.internals["C3"].shape == (2, 16, 10, 10)
    gru = GRU(GRU.Params(input_item_size=10, output_item_size=8, hidden_size=5))
    _, batch = serial_batch(3)
    viz.recorded_forward(gru, batch)
    assert gru.internals["hidden"].shape == (3, 8, 5)


# --- the components' figures ---------------------------------------------------------------------------
@pytest.mark.parametrize("problem_cls", [SerialRecall, ReverseRecall])
def test_algorithmic_plot_steps_through_time(problem_cls):
    problem, batch = serial_batch(3, problem_cls=problem_cls)  # T = 2 * 3 + 2
    frames = problem.plot(batch, 1, torch.randn(3, 8, 8))
    assert isinstance(frames, Frames) and isinstance(frames.figure, Figure) and len(frames) == 8
    titles = [ax.get_title(loc="left") for ax in frames.figure.axes if ax.get_title(loc="left")]
    assert titles[:3] == ["inputs (control bits 0-1, then data bits)", "targets",
                          "predictions (sigmoid of the logits)"] and "mask (scored steps)" in titles
    without = problem.plot(batch, 1)
    assert not any("predictions" in ax.get_title(loc="left") for ax in without.figure.axes)


@pytest.mark.parametrize("model", [lstm(), GRU(GRU.Params(input_item_size=10, output_item_size=8, hidden_size=6))])
def test_recurrent_plot_shows_the_hidden_state_over_time(model):
    _, batch = serial_batch(2)
    predictions = model(batch)
    assert model.plot(batch, predictions, 0) is None  # nothing recorded, nothing to show
    predictions = viz.recorded_forward(model, batch)
    frames = model.plot(batch, predictions, 0)
    assert isinstance(frames, Frames) and len(frames) == 6
    shown = frames.figure.axes[0].images[0].get_array()
    assert np.allclose(shown, model.internals["hidden"][0].numpy().T)  # units x steps


@pytest.mark.parametrize("model", [LeNet5(), SimpleConvNet(SimpleConvNet.Params(height=32, width=32, num_channels=1,
                                                                                 num_classes=10))])
def test_vision_plot_shows_the_feature_maps(model):
    batch = {"images": torch.rand(2, 1, 32, 32)}
    predictions = viz.recorded_forward(model, batch)
    figure = model.plot(batch, predictions, 1)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1 + 6 + 16  # the input and every map of the two conv stages
    first_map = figure.axes[1].images[0].get_array()
    assert np.allclose(first_map, next(iter(model.internals.values()))[1, 0].numpy())


@needs_mnist
def test_mnist_plot_shows_the_image_target_and_top3_predictions():
    problem, batch = mnist()
    logits = torch.full((4, 10), -5.0)
    logits[2, [4, 1, 9]] = torch.tensor([3.0, 2.0, 1.0])
    figure = problem.plot(batch, 2, logits)
    assert isinstance(figure, Figure)
    image_ax, bars_ax = figure.axes
    assert image_ax.get_title() == f"target: {batch['targets_label'][2]}"
    assert np.allclose(image_ax.images[0].get_array(), batch["images"][2, 0].numpy())
    labels = sorted(bars_ax.get_yticklabels(), key=lambda t: -t.get_position()[1])  # top to bottom
    assert [t.get_text() for t in labels] == ["Four", "One", "Nine"]
    widths = sorted((p.get_width() for p in bars_ax.patches), reverse=True)
    assert np.allclose(widths, torch.softmax(logits[2], 0)[[4, 1, 9]].numpy(), atol=1e-6)
    assert isinstance(problem.plot(batch, 0), Figure)  # without predictions


# --- files ------------------------------------------------------------------------------------------------
def test_write_sample_writes_a_gif_with_one_frame_per_step_beside_a_png_of_the_last(tmp_path):
    problem, batch = serial_batch(4)  # T = 10
    model = lstm()
    predictions = viz.recorded_forward(model, batch)
    paths = viz.write_sample(tmp_path, problem, model, batch, predictions, 2, number=5)
    assert sorted(p.name for p in paths) == ["sample_5_LSTM.gif", "sample_5_LSTM.png", "sample_5_SerialRecall.gif",
                                             "sample_5_SerialRecall.png"]
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no temporary files left behind
    for name in ("SerialRecall", "LSTM"):
        frames = gif_frames(tmp_path / f"sample_5_{name}.gif")
        assert len(frames) == 10
        assert not np.array_equal(frames[0], frames[-1])  # the frames step through time
        height, width = frames[0].shape[:2]
        assert png_size(tmp_path / f"sample_5_{name}.png") == (width, height)
        with Image.open(tmp_path / f"sample_5_{name}.png") as last:
            # The PNG is the last step; the GIF's palette changes colours a little, not the picture.
            assert np.abs(np.asarray(last.convert("RGB")).astype(int) - frames[-1]).mean() < 4


def test_a_still_figure_is_one_png_and_a_list_of_figures_is_a_gif(tmp_path):
    figures = []
    for colour in ("red", "blue", "green"):
        figure = Figure(figsize=(2, 1), dpi=50)
        figure.patch.set_facecolor(colour)
        figures.append(figure)
    assert viz.write_images(tmp_path, "still", *viz.render_all(figures[0])) == [tmp_path / "still.png"]
    assert png_size(tmp_path / "still.png") == (100, 50)
    viz.write_images(tmp_path, "frames", *viz.render_all(figures))
    frames = gif_frames(tmp_path / "frames.gif")
    assert [tuple(f[25, 50]) for f in frames] == [(255, 0, 0), (0, 0, 255), (0, 128, 0)]
    assert viz.render_all(None) == ([], False)
    with pytest.raises(TypeError, match="Figure"):
        viz.render_all(["not a figure"])


def test_library_code_never_imports_pyplot_or_a_gui(tmp_path):
    code = """
import sys, torch
from pathlib import Path
from miprometheus import visualization as viz
from miprometheus.models.recurrent.lstm import LSTM
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall
problem = SerialRecall(SerialRecall.Params(batch_size=2, min_sequence_length=2, max_sequence_length=2))
model = LSTM(LSTM.Params(input_item_size=10, output_item_size=8, hidden_size=4))
batch = problem.generate_batch(2)
assert viz.write_sample(Path(sys.argv[1]), problem, model, batch, viz.recorded_forward(model, batch), 0)
gui = ("matplotlib.pyplot", "tkinter", "matplotlib.backends.backend_tk")
print(sorted(m for m in sys.modules if m.startswith(gui)))
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the window -----------------------------------------------------------------------------------------
def coloured(rgb: tuple[int, int, int]) -> bytes:
    return viz.encode([Image.new("RGB", (6, 4), rgb)])[0]


def test_window_sliders_step_through_samples_and_time_steps():
    red, green, blue, white = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    samples = [{"SerialRecall": [coloured(red), coloured(green), coloured(blue)], "LSTM": [coloured(white)]},
               {"SerialRecall": [coloured(blue)]}]
    figure = Figure()
    FigureCanvasAgg(figure)  # any canvas: no display needed to build and drive the window
    window = viz.Window(figure, samples, "test")

    def shown(component: int) -> tuple[int, ...]:
        return tuple(np.asarray(window.images[component].get_array())[0, 0])

    assert window.names == ["SerialRecall", "LSTM"]
    assert window.step == 2 and shown(0) == blue  # opens on the last step
    window.step_slider.set_val(1)
    assert shown(0) == green and shown(1) == white  # a still figure shows at every step
    window.sample_slider.set_val(1)
    assert shown(0) == blue  # the second sample has one frame: its last
    assert shown(1) == (255, 255, 255)  # and no LSTM figure: blank
    figure.canvas.draw()


def test_window_without_a_display_is_bad_input_and_creates_nothing(tmp_path, tiny_config, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    options = RunOptions(expdir=tmp_path / "exp", progress=False, command_line=["test"], visualize="window")
    with pytest.raises(BadInputError, match="needs a display"):
        runs.train([str(tiny_config)], [], options)
    assert not (tmp_path / "exp").exists()


def test_visualize_arguments():
    from miprometheus.cli import build_parser
    from miprometheus.workers.commands import bare_visualize

    assert bare_visualize(["train", "--visualize", "a.yaml", "x=1"]) == ["train", "--visualize=1", "a.yaml", "x=1"]
    assert bare_visualize(["test", "DIR", "--visualize"]) == ["test", "DIR", "--visualize=1"]
    assert bare_visualize(["test", "DIR", "--visualize", "3"]) == ["test", "DIR", "--visualize", "3"]
    parser = build_parser()
    assert parser.parse_args(["test", "DIR", "--visualize", "window"]).visualize == "window"
    assert parser.parse_args(["train", "a.yaml"]).visualize is None
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["test", "DIR", "--visualize", "0"])
    assert exited.value.code == 2


# --- mip train / mip test --visualize: read back every file written ----------------------------------------
def visualization_files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def check_sequence_files(files: dict[str, Path], prefix: str, samples: int, steps: set[int]) -> None:
    """Every sample's problem and model figures: a GIF of one frame per step and a PNG of the frames' size."""
    expected = {f"{prefix}sample_{i}_{name}.{ext}" for i in range(samples) for name in ("SerialRecall", "LSTM")
                for ext in ("gif", "png")}
    assert set(files) == expected
    for key, path in files.items():
        if key.endswith(".gif"):
            frames = gif_frames(path)
            assert len(frames) in steps
            assert png_size(files[key[:-4] + ".png"]) == (frames[0].shape[1], frames[0].shape[0])


@pytest.mark.slow
def test_mip_train_and_test_visualize_write_every_figure(tmp_path, tiny_config):
    run_mip("train", "--visualize", tiny_config, "training.terminal_conditions.episode_limit=20",
            "validation.interval=10", "--expdir", tmp_path / "exp", "--no-progress", cwd=tmp_path, check=True)
    [folder] = experiment_dirs(tmp_path / "exp")
    files = visualization_files(folder / "visualizations")
    assert {key.split("/")[0] for key in files} == {"episode_10", "episode_20"}
    for episode in ("episode_10", "episode_20"):
        # Validation sequences have L = 4: T = 10 steps.
        check_sequence_files({k: v for k, v in files.items() if k.startswith(episode)}, f"{episode}/", 1, {10})
    # The same validation sample every time: its inputs (top panel) are identical across episodes.
    first, last = (np.asarray(Image.open(folder / "visualizations" / e / "sample_0_SerialRecall.png").convert("RGB"))
                   for e in ("episode_10", "episode_20"))
    assert np.array_equal(first[:200], last[:200])

    result = run_mip("test", folder, "--visualize", "2", cwd=tmp_path, check=True)
    [test_folder] = [p for p in folder.iterdir() if p.name.startswith("test_")]
    assert str(test_folder) in result.stdout
    check_sequence_files(visualization_files(test_folder / "visualizations"), "", 2, {10})


def test_training_without_validation_draws_the_last_training_batch(tmp_path, tiny_config):
    text = tiny_config.read_text()
    tiny_config.write_text(text[:text.index("validation:")] + text[text.index("testing:"):])
    options = RunOptions(expdir=tmp_path / "exp", progress=False, command_line=["test"], visualize=1)
    result = runs.train([str(tiny_config)], ["training.terminal_conditions.episode_limit=5"], options)
    files = visualization_files(result.folder / "visualizations")
    check_sequence_files(files, "episode_5/", 1, {4, 6, 8, 10})  # training lengths 1-4


@pytest.mark.slow
@needs_mnist
def test_lenet5_on_mnist_writes_images_with_predictions_and_feature_maps(tmp_path):
    options = RunOptions(expdir=tmp_path / "exp", progress=False, command_line=["test"], visualize=1)
    result = runs.train([str(CONFIGS / "vision" / "lenet5_mnist_t10k.yaml")], [
        f"training.problem.data_folder={SHARED_MNIST}", "training.sampler.indices=[0, 128]",
        "training.terminal_conditions.episode_limit=2",
        "validation.sampler.indices=[8000, 8250]", "testing.sampler.indices=[9000, 9250]", "training.seed=1"], options)
    options.visualize = 3
    test_folder, _ = runs.test(result.folder, [], options)
    for folder, samples in ((result.folder / "visualizations" / "episode_2", 1), (test_folder / "visualizations", 3)):
        files = visualization_files(folder)
        assert set(files) == {f"sample_{i}_{name}.png" for i in range(samples) for name in ("MNIST", "LeNet5")}
        for path in files.values():
            width, height = png_size(path)
            assert width >= 500 and height >= 300
    with Image.open(test_folder / "visualizations" / "sample_0_MNIST.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels.reshape(-1, 3) == (255, 255, 255)).all(axis=1).mean() < 0.95  # something is drawn


@pytest.mark.slow
def test_visualizing_does_not_change_training(tmp_path, tiny_config):
    from miprometheus.statistics import read_csv

    def run(name: str, visualize: int | None) -> list[dict[str, str]]:
        options = RunOptions(expdir=tmp_path / name, progress=False, command_line=["test"], visualize=visualize)
        result = runs.train([str(tiny_config)], ["training.terminal_conditions.episode_limit=20",
                                                 "validation.interval=10"], options)
        assert (result.folder / "visualizations").is_dir() == (visualize is not None)
        return [{k: v for k, v in row.items() if k != "time"}
                for csv in ("training_statistics.csv", "validation_statistics.csv")
                for row in read_csv(result.folder / csv)]

    assert run("with", 1) == run("without", None)

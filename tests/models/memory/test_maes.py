"""MAES and EncoderSolverLSTM: the per-sample mode switch, the MAE/MAS equations, the state, transfer of the encoder
(init_from with a prefix, freeze), the plots and overfitting a fixed batch."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from miprometheus import visualization as viz
from miprometheus.checkpoint import load_checkpoint
from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.errors import ConfigError, DataError
from miprometheus.models.memory.encoder_solver_lstm import EncoderSolverLSTM
from miprometheus.models.memory.maes import MAES, solve_mode
from miprometheus.plotting import Frames, busiest_addresses
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall
from miprometheus.workers import runs
from miprometheus.workers.run_folder import RunOptions
from miprometheus.workers.trainer import Trainer
from tests.test_visualization import gif_frames

STORE, RECALL = 0, 1


def maes(**overrides) -> MAES:
    torch.manual_seed(0)
    return MAES(MAES.Params(**{"input_item_size": 10, "output_item_size": 8, "store_bit": STORE,
                               "recall_bit": RECALL, **overrides}))


def es_lstm(**overrides) -> EncoderSolverLSTM:
    torch.manual_seed(0)
    return EncoderSolverLSTM(EncoderSolverLSTM.Params(**{"input_item_size": 10, "output_item_size": 8,
                                                         "store_bit": STORE, "recall_bit": RECALL,
                                                         "hidden_size": 16, **overrides}))


def serial_batch(batch_size: int, length: int) -> tuple[SerialRecall, dict]:
    problem = SerialRecall(SerialRecall.Params(batch_size=batch_size, min_sequence_length=length,
                                               max_sequence_length=length))
    problem.seed(0)
    return problem, problem.generate_batch(batch_size)


def marked(steps: int, store: list[int], recall: list[int]) -> torch.Tensor:
    """One sample ``[T, 10]`` of random data with the store / recall bits at the given steps."""
    x = torch.rand(steps, 10)
    x[:, :2] = 0.0
    x[store, STORE] = 1.0
    x[recall, RECALL] = 1.0
    return x


# --- the mode switch ------------------------------------------------------------------------------------------
def test_each_sample_switches_at_its_own_recall_bit_and_maes_never_switches_back():
    x = torch.stack([marked(8, [0], [3]), marked(8, [0, 5], [2]), marked(8, [], [6])])
    assert solve_mode(x, STORE, RECALL).int().tolist() == [[0, 0, 0, 1, 1, 1, 1, 1],
                                                           [0, 0, 1, 1, 1, 1, 1, 1],
                                                           [0, 0, 0, 0, 0, 0, 1, 1]]
    # EncoderSolverLSTM: the store bit brings a sample back to Encode; no bit at the start means Encode.
    assert solve_mode(x, STORE, RECALL, switch_back=True).int().tolist() == [[0, 0, 0, 1, 1, 1, 1, 1],
                                                                             [0, 0, 1, 1, 1, 0, 0, 0],
                                                                             [0, 0, 0, 0, 0, 0, 1, 1]]


def test_both_bits_on_one_item_is_a_data_error_naming_it():
    x = marked(5, [0, 3], [3]).unsqueeze(0)
    with pytest.raises(DataError, match="sample 0, item 3 has both the store bit"):
        solve_mode(x, STORE, RECALL)
    with pytest.raises(DataError):
        maes()({"sequences": x})


@pytest.mark.parametrize("make", [maes, es_lstm], ids=["MAES", "EncoderSolverLSTM"])
def test_samples_with_different_phase_boundaries_get_what_each_gets_alone(make):
    model = make()
    x = torch.stack([marked(9, [0], [3]), marked(9, [0], [5]), marked(9, [0, 6], [2])])
    together = model({"sequences": x})
    for i in range(3):
        alone = model({"sequences": x[i:i + 1]})
        assert torch.allclose(together[i], alone[0], atol=1e-6), i


# --- MAES ----------------------------------------------------------------------------------------------------
def test_maes_shapes_memory_size_and_the_memory_frozen_while_solving():
    problem, batch = serial_batch(3, 4)  # T = 10, recall marker at step 5
    model = maes()
    predictions = viz.recorded_forward(model, batch)
    assert predictions.shape == (3, 10, 8)
    assert model.output_definitions["predictions"].matches_value(predictions) is None
    memory = model.internals["memory"]
    assert memory.shape == (3, 10, 10, 15)  # N = T
    assert not torch.equal(memory[:, 3], memory[:, 4])  # the encoder writes
    for t in range(5, 10):  # the solver never writes: the final encoder memory stays
        assert torch.equal(memory[:, t], memory[:, 4])
    assert model.internals["write_attention"][:, 5:].abs().sum() == 0
    assert model.internals["read_attention"][:, :5].abs().sum() == 0
    fixed = maes(num_addresses=6)
    viz.recorded_forward(fixed, batch)
    assert fixed.internals["memory"].shape == (3, 10, 6, 15)


@pytest.mark.parametrize("overrides, message", [
    ({"shift_size": 4}, "shift_size must be odd"),
    ({"recall_bit": 0}, "different channels"),
    ({"store_bit": 10}, "must be an input channel"),
    ({"num_addresses": 1}, "at least shift_size"),
])
def test_maes_bad_parameters_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        maes(**overrides)


def set_bias(layer: torch.nn.Linear, bias: list[float]) -> None:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(bias))


def test_the_encoder_shifts_sharpens_then_erases_and_adds_at_its_new_attention():
    model = maes(num_content_bits=2, num_addresses=4)
    # shift logits (forward, stay, back), gamma, erase (2), add (2): move forward, erase bit 0, add bit 1.
    set_bias(model.encoder.interface, [30.0, 0.0, 0.0, 5.0, 30.0, -30.0, -30.0, 30.0])
    state = model.init_state(1, 4, None, torch.float32)
    memory = torch.full((1, 4, 2), 0.5)
    _, _, memory, attention = model.encoder(torch.zeros(1, 10), state.encoder, memory, state.encoder_attention)
    assert torch.allclose(attention, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6)  # delta_0 moved to 1
    expected = torch.full((4, 2), 0.5)
    expected[1] = torch.tensor([0.0, 1.5])  # 0.5 (1 - 1) + 0 and 0.5 (1 - 0) + 1
    assert torch.allclose(memory[0], expected, atol=1e-5)


def test_the_solver_gates_are_independent_sigmoids_after_shift_and_sharpen_and_are_not_normalised():
    model = maes(num_content_bits=2, num_addresses=4)
    # gates (3), shift logits (3), gamma: every gate ~1, shift forward.
    set_bias(model.solver.interface, [30.0, 30.0, 30.0, 30.0, 0.0, 0.0, 5.0])
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 0.0]]])
    delta0 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    encoder_final = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    state = model.solver.controller.init_state(1)
    _, _, attention, gates = model.solver(torch.zeros(1, 10), state, memory, delta0, encoder_final, delta0)
    assert torch.allclose(gates, torch.ones(1, 3))
    # shifted delta_0 (address 1) + the encoder's last attention (2) + delta_0: sums to 3, not 1.
    assert torch.allclose(attention, torch.tensor([[1.0, 1.0, 1.0, 0.0]]), atol=1e-5)
    with torch.no_grad():
        model.solver.output.weight.zero_()
        model.solver.output.bias.zero_()
        model.solver.output.weight[0, -2] = 1.0  # y[0] = r[0], the read of content bit 0
    y, _, _, _ = model.solver(torch.zeros(1, 10), state, memory, delta0, encoder_final, delta0)
    assert torch.allclose(y[0, 0], torch.tensor(3.0), atol=1e-4)  # 1 + 0 + 2


@pytest.mark.parametrize("pass_cell_state", [True, False])
def test_pass_cell_state_hands_the_encoder_state_to_the_solver(pass_cell_state):
    model = maes(pass_cell_state=pass_cell_state)
    with torch.no_grad():
        model.solver.output.weight[:, model.solver.controller.hidden_size:] = 0.0  # outputs see h alone, no reads
    a = marked(9, [0], [5]).unsqueeze(0)
    b = a.clone()
    b[0, 1:5, 2:] = 1.0 - b[0, 1:5, 2:]  # other stored items, the same recall phase
    solve_a, solve_b = model({"sequences": a})[0, 5:], model({"sequences": b})[0, 5:]
    assert torch.equal(solve_a, solve_b) is not pass_cell_state


def test_the_recurrent_state_lives_in_maes_state_not_on_the_modules():
    model = maes()
    before = {name: dict(vars(m)) for name, m in model.named_modules()}
    model({"sequences": marked(8, [0], [4]).unsqueeze(0)})
    for name, module in model.named_modules():
        tensors = [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]
        assert tensors == [], f"{name or 'MAES'} holds tensors {tensors} after a forward"
        assert set(vars(module)) == set(before[name])


@pytest.mark.slow
def test_maes_plot_shows_the_memory_and_both_attentions_over_time(tmp_path):
    problem, batch = serial_batch(2, 3)  # T = 8
    model = maes()
    predictions = viz.recorded_forward(model, batch)
    frames = model.plot(batch, predictions, 1)
    assert isinstance(frames, Frames) and len(frames) == 8
    titles = [ax.get_title(loc="left") for ax in frames.figure.axes if ax.get_title(loc="left")]
    assert titles[0].startswith("memory") and "encoder write attention" in titles
    assert any(t.startswith("solver read attention") for t in titles)
    frames.update(2)
    assert np.allclose(frames.figure.axes[0].images[0].get_array(), model.internals["memory"][1, 2].numpy().T)
    viz.write_sample(tmp_path, problem, model, batch, predictions, 1, number=0)
    assert len(gif_frames(tmp_path / "sample_0_MAES.gif")) == 8


def test_a_large_fixed_memory_is_plotted_on_the_addresses_used_in_ring_order():
    mass = np.zeros(10)
    mass[[8, 9, 0, 1]] = 1.0
    assert busiest_addresses(mass, 4).tolist() == [8, 9, 0, 1]  # a region wrapping past N-1 stays in one piece
    assert busiest_addresses(mass, 12).tolist() == list(range(10))
    problem, batch = serial_batch(2, 3)  # T = 8
    model = maes(num_addresses=64)
    frames = model.plot(batch, viz.recorded_forward(model, batch), 0)
    memory_ax, write_ax = frames.figure.axes[0], frames.figure.axes[2]  # (each heat map has its colour bar)
    assert memory_ax.images[0].get_array().shape == (15, 8) and "8 of 64 shown" in memory_ax.get_title(loc="left")
    assert write_ax.images[0].get_array().shape == (8, 8)


def overfit(model: torch.nn.Module, lr: float, steps: int = 300) -> tuple[list[float], float]:
    problem, batch = serial_batch(8, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, losses = time.monotonic(), []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = problem.loss(batch, model(batch))
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
        optimizer.step()
        losses.append(loss.item())
    return losses, time.monotonic() - start


@pytest.mark.slow
def test_maes_overfits_a_fixed_serial_recall_batch():
    """B = 8, L = 4: the masked loss falls at least 10x in 300 Adam steps (lr 0.03), in about 8 s on one thread."""
    losses, seconds = overfit(maes(), lr=0.03)
    assert losses[0] > 0.6 and losses[-1] < losses[0] / 10, losses[::50]
    assert seconds < 90


# --- transfer of the encoder ----------------------------------------------------------------------------------
TINY_MAES = """
training:
  problem: {name: SerialRecall, batch_size: 8, min_sequence_length: 1, max_sequence_length: 3, size: 80}
  optimizer: {name: Adam, lr: 0.01}
  terminal_conditions: {episode_limit: 15}
  seed: 3
model: {name: MAES, hidden_size: 8, num_content_bits: 6}
"""


def test_a_trained_encoder_loads_by_prefix_and_stays_frozen_while_the_solver_trains(tmp_path):
    source_config = tmp_path / "source.yaml"
    source_config.write_text(TINY_MAES)
    options = RunOptions(expdir=tmp_path / "exp", progress=False, command_line=["test"])
    source = runs.train([str(source_config)], [], options).folder
    trained = load_checkpoint(source / "models" / "model_best.pt")["model"]

    transfer = tmp_path / "transfer.yaml"
    transfer.write_text(TINY_MAES.replace("num_content_bits: 6}", "num_content_bits: 6, freeze: [encoder], "
                                          f"init_from: {{path: '{source}', prefix: {{'encoder.': 'encoder.'}}}}}}"))
    spec = validate(load_config([transfer], ["training.seed=4"]))
    initial = {k: v.clone() for k, v in Trainer(spec, seed=4).model.state_dict().items()}
    folder = runs.train([str(transfer)], ["training.seed=4"], options).folder
    final = load_checkpoint(folder / "models" / "model_last.pt")["model"]
    encoder_keys = [k for k in final if k.startswith("encoder.")]
    solver_keys = [k for k in final if k.startswith("solver.")]
    assert len(encoder_keys) == 6 and len(solver_keys) == 6
    for key in encoder_keys:  # loaded from the source run, then never trained
        assert torch.equal(initial[key], trained[key]) and torch.equal(final[key], trained[key]), key
    for key in solver_keys:  # not loaded (only encoder. is mapped), and trained
        assert not torch.equal(initial[key], trained[key]) and not torch.equal(final[key], initial[key]), key
    info = json.loads((folder / "run_info.json").read_text())
    assert info["frozen"]["modules"] == ["encoder"] and info["init_from"]["loaded"] == 6


# --- EncoderSolverLSTM ----------------------------------------------------------------------------------------
def test_es_lstm_runs_the_cell_of_each_mode_on_one_state_and_shares_the_output_layer():
    model = es_lstm()
    x = marked(9, [0, 6], [3]).unsqueeze(0)  # encode 0-2, solve 3-5, encode 6-8
    predictions = viz.recorded_forward(model, {"sequences": x})
    assert predictions.shape == (1, 9, 8)
    assert model.internals["solving"][0].int().tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    h = c = torch.zeros(1, 16)
    with torch.no_grad():
        for t in range(9):
            cell = model.solver if 3 <= t < 6 else model.encoder
            h, c = cell(x[:, t], (h, c))
            assert torch.allclose(predictions[0, t], model.output(h)[0], atol=1e-6), t


def test_es_lstm_starts_in_encode_mode_when_no_bit_is_set():
    model = es_lstm()
    x = torch.zeros(1, 4, 10)  # neither bit anywhere: the original crashed
    predictions = viz.recorded_forward(model, {"sequences": x})
    assert model.internals["solving"].sum() == 0 and torch.isfinite(predictions).all()


@pytest.mark.slow
def test_es_lstm_overfits_a_fixed_serial_recall_batch_and_plots():
    """B = 8, L = 4, H = 64: the masked loss falls at least 10x in 300 Adam steps (lr 0.01), in seconds."""
    model = es_lstm(hidden_size=64)
    losses, seconds = overfit(model, lr=0.01)
    assert losses[0] > 0.6 and losses[-1] < losses[0] / 10, losses[::50]
    problem, batch = serial_batch(2, 3)
    frames = model.plot(batch, viz.recorded_forward(model, batch), 0)
    assert isinstance(frames, Frames) and len(frames) == 8


def test_es_lstm_bad_bits_are_config_errors():
    with pytest.raises(ConfigError, match="different channels"):
        es_lstm(recall_bit=0)

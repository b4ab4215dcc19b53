"""The Differentiable Neural Computer: each memory equation on hand-made tensors, shapes, gradients, plot, learning."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from miprometheus import visualization as viz
from miprometheus.errors import ConfigError
from miprometheus.models.memory import dnc
from miprometheus.models.memory.dnc import DNC
from miprometheus.plotting import Frames
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall
from tests.test_visualization import gif_frames


def make_dnc(**overrides) -> DNC:
    values = dict(input_item_size=10, output_item_size=8, hidden_size=16, word_size=6)
    values.update(overrides)
    return DNC(DNC.Params(**values))


def serial_batch(length: int, batch_size: int = 3, seed: int = 0) -> tuple[SerialRecall, dict]:
    problem = SerialRecall(SerialRecall.Params(batch_size=batch_size, min_sequence_length=length,
                                               max_sequence_length=length))
    problem.seed(seed)
    return problem, problem.generate_batch(batch_size)


# --- the equations on hand-made tensors ---------------------------------------------------------------------------
def test_allocation_of_a_known_usage_goes_to_the_least_used_slots_first():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3],
                          [0.0, 1.0, 1.0, 1.0]])
    # Row 0, by ascending usage: slot 1 (0.1), 3 (0.3), 0 (0.5), 2 (0.9):
    #   a[1] = 0.9, a[3] = 0.7 * 0.1, a[0] = 0.5 * 0.1 * 0.3, a[2] = 0.1 * 0.1 * 0.3 * 0.5.
    # Row 1: the one free slot takes everything, the full ones nothing.
    expected = torch.tensor([[0.015, 0.9, 0.0015, 0.07],
                             [1.0, 0.0, 0.0, 0.0]])
    allocation = dnc.allocation_weighting(usage)
    assert torch.allclose(allocation, expected, atol=1e-5)
    assert torch.all(allocation.sum(-1) <= 1.0 + 1e-6)


def test_allocation_gives_ties_to_the_lower_slot_and_lets_gradients_through_the_values():
    usage = torch.zeros(1, 3, requires_grad=True)
    allocation = dnc.allocation_weighting(usage)
    assert torch.allclose(allocation, torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-5)  # an empty memory: slot 0
    allocation[0, 1].backward()
    assert usage.grad[0, 0] > 0  # using slot 0 more frees slot 1: the values carry gradients, not the order


def test_usage_counts_the_last_write_and_frees_what_was_read_with_a_free_gate():
    usage = torch.tensor([[0.5, 0.0, 1.0]])
    write_weights = torch.tensor([[0.0, 1.0, 0.0]])
    free_gates = torch.tensor([[1.0, 0.5]])               # head 0 frees all it read, head 1 half
    read_weights = torch.tensor([[[0.0, 0.0, 1.0],        # head 0 read slot 2
                                  [1.0, 0.0, 0.0]]])      # head 1 read slot 0
    updated = dnc.usage_update(usage, write_weights, free_gates, read_weights)
    # slot 0: 0.5 * (1 - 0.5); slot 1: written, 1; slot 2: freed by head 0, 0.
    assert torch.allclose(updated, torch.tensor([[0.25, 1.0, 0.0]]))


def test_links_follow_the_order_of_the_writes_and_the_diagonal_stays_zero():
    n = 4

    def write(slots):
        link, precedence = torch.zeros(1, n, n), torch.zeros(1, n)
        for slot in slots:
            w = torch.nn.functional.one_hot(torch.tensor([slot]), n).float()
            link = dnc.link_update(link, precedence, w)
            precedence = dnc.precedence_update(precedence, w)
        return link[0], precedence[0]

    link, precedence = write([0, 1, 2])
    expected = torch.zeros(n, n)
    expected[1, 0] = 1.0  # slot 1 was written right after slot 0
    expected[2, 1] = 1.0
    assert torch.equal(link, expected)
    assert torch.equal(precedence, torch.tensor([0.0, 0.0, 1.0, 0.0]))
    # Slot 2 written again: it now follows itself, which the zeroed diagonal drops (w[i] p[j] = 1 at i = j = 2),
    # and its old link to slot 1 is overwritten (factor 1 - w[2] - w[1] = 0).
    link, _ = write([0, 1, 2, 2])
    expected[2, 1] = 0.0
    assert torch.equal(link, expected)


def test_link_update_on_soft_weightings_equals_the_paper_formula_element_by_element():
    generator = torch.Generator().manual_seed(0)
    b, n = 2, 5
    link = torch.rand(b, n, n, generator=generator) * (1 - torch.eye(n))
    precedence = torch.softmax(torch.randn(b, n, generator=generator), -1) * 0.7
    w = torch.softmax(torch.randn(b, n, generator=generator), -1) * 0.9
    updated = dnc.link_update(link, precedence, w)
    for s in range(b):
        for i in range(n):
            for j in range(n):
                value = 0.0 if i == j else (1 - w[s, i] - w[s, j]) * link[s, i, j] + w[s, i] * precedence[s, j]
                assert updated[s, i, j].item() == pytest.approx(float(value), abs=1e-6)
    new_precedence = dnc.precedence_update(precedence, w)
    assert torch.allclose(new_precedence, (1 - w.sum(-1, keepdim=True)) * precedence + w)


def test_forward_and_backward_weightings_step_along_the_links():
    n = 4
    link = torch.zeros(1, n, n)
    link[0, 1, 0] = link[0, 2, 1] = link[0, 3, 2] = 1.0     # written in the order 0, 1, 2, 3
    read = torch.tensor([[[0.0, 1.0, 0.0, 0.0],             # head 0 on slot 1
                          [0.0, 0.0, 0.0, 1.0]]])           # head 1 on slot 3, the last written
    forward, backward = dnc.directional_weightings(link, read)
    assert torch.equal(forward[0], torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(backward[0], torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_read_modes_are_a_softmax_per_head():
    interface = dnc.DNCInterface(hidden_size=7, num_read_heads=3, word_size=4)
    with torch.no_grad():
        interface.layer.bias.normal_(0.0, 3.0)  # modes far from uniform, so a softmax across heads would show
    p = interface(torch.randn(5, 7))
    assert p["read_modes"].shape == (5, 3, 3)
    assert torch.allclose(p["read_modes"].sum(-1), torch.ones(5, 3))  # one distribution per head
    assert p["read_keys"].shape == (5, 3, 4) and p["read_strengths"].shape == (5, 3, 1)
    assert torch.all(p["read_strengths"] >= 1.0) and torch.all(p["write_strength"] >= 1.0)
    for gate in ("free_gates", "allocation_gate", "write_gate", "erase"):
        assert torch.all((p[gate] > 0) & (p[gate] < 1))


# --- the model --------------------------------------------------------------------------------------------------------
def test_memory_has_one_slot_per_step_with_minus_one_else_the_fixed_size():
    _, batch = serial_batch(3)  # T = 8
    for num_addresses, expected in ((-1, 8), (5, 5)):
        model = make_dnc(num_addresses=num_addresses, num_read_heads=2)
        predictions = viz.recorded_forward(model, batch)
        assert predictions.shape == (3, 8, 8)
        assert model.internals["memory"].shape == (3, 8, expected, 6)
        assert model.internals["read_weights"].shape == (3, 8, 2, expected)
        assert model.internals["link"].shape == (3, expected, expected)
        link = model.internals["link"]
        assert torch.all(torch.diagonal(link, dim1=1, dim2=2) == 0)
        # Weightings sum to 1 at most (a write gate below 1, links that lead nowhere hold weight back);
        # usage stays in [0, 1].
        for key in ("write_weights", "read_weights"):
            weights = model.internals[key]
            assert torch.all(weights >= 0) and torch.all(weights.sum(-1) <= 1 + 1e-5)
        usage = model.internals["usage"]
        assert torch.all((usage >= 0) & (usage <= 1 + 1e-6))


def test_a_longer_test_sequence_gets_a_bigger_memory_and_finite_logits():
    model = make_dnc()
    _, batch = serial_batch(40, batch_size=2)  # T = 82, N = 82 at test time
    with torch.no_grad():
        predictions = model(batch)
    assert predictions.shape == (2, 82, 8) and torch.isfinite(predictions).all()


def test_gradients_reach_the_free_gates_and_every_parameter():
    model = make_dnc(num_read_heads=2)
    problem, batch = serial_batch(3)
    problem.loss(batch, model(batch)).backward()
    sizes = model.cell.interface.sizes
    start = sum(sizes[:6])  # read keys, read strengths, write key, write strength, erase, write vector
    free_rows = model.cell.interface.layer.weight.grad[start:start + sizes[6]]
    assert free_rows.abs().sum() > 0  # the original computed the usage without gradients: these were zero
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bad_parameters_are_config_errors():
    for overrides in ({"num_addresses": 0}, {"num_read_heads": 0}, {"word_size": 0}, {"controller": "ffgru"}):
        with pytest.raises(ConfigError, match="model DNC"):
            make_dnc(**overrides)


@pytest.mark.slow
def test_plot_is_one_frame_per_step_with_memory_weightings_and_usage(tmp_path):
    problem, batch = serial_batch(3)  # T = 8
    model = make_dnc(num_read_heads=2)
    predictions = viz.recorded_forward(model, batch)
    frames = model.plot(batch, predictions, 1)
    assert isinstance(frames, Frames) and len(frames) == 8
    titles = {ax.get_title(loc="left") for ax in frames.figure.axes}
    for expected in ("write weighting w^w", "read head 1: weighting w^r", "usage u",
                     "link matrix L at the last step (row i follows column j)",
                     "memory M_t after the write (content x slot)"):
        assert expected in titles
    viz.write_sample(tmp_path, problem, model, batch, predictions, 1, number=0)
    gif = gif_frames(tmp_path / "sample_0_DNC.gif")
    assert len(gif) == 8 and not np.array_equal(gif[0], gif[-1])
    assert model.plot(batch, predictions, 0) is not None
    model(batch)  # not recording: nothing to draw
    assert model.plot(batch, predictions, 0) is None


@pytest.mark.slow
def test_dnc_overfits_a_fixed_batch_of_serial_recall():
    """The masked loss on one batch (B = 8, 4 items) falls at least 5x in 150 Adam steps (lr 0.01), ~5 s on one
    core (~10 s when the machine is shared)."""
    torch.manual_seed(0)
    problem, batch = serial_batch(4, batch_size=8)
    model = make_dnc(hidden_size=32, word_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    losses = []
    for _ in range(150):
        loss = problem.loss(batch, model(batch))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.6  # chance: about ln 2
    assert min(losses[-10:]) < losses[0] / 5, losses[::10]
    assert time.perf_counter() - start < 60

"""Tests of the comparison tasks SequenceComparison, SequenceEquality, SequenceSymmetry (Jayram et al. 2018)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from matplotlib.figure import Figure

from miprometheus import catalogue
from miprometheus.data import check_values
from miprometheus.plotting import Frames
from miprometheus.problems.seq_to_seq.algorithmic.sequence_comparison import SequenceComparison
from miprometheus.problems.seq_to_seq.algorithmic.sequence_equality import SequenceEquality
from miprometheus.problems.seq_to_seq.algorithmic.sequence_symmetry import SequenceSymmetry
from miprometheus.registry import get_problem
from tests.algorithmic_examples import parse_example

# The items of the worked examples: x = a, b, c.
A, B, C = [1, 0, 1], [0, 1, 1], [1, 1, 0]
ITEMS = torch.tensor([[A, B, C]], dtype=torch.float32)
NO_CONTROL_LINE = torch.zeros(2)

# Worked examples of the original generators, verbatim: t | control bits | data bits || target bit | mask | role.
COMPARISON_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0 | 0 | recall marker
 5 |  0  0 |  1  0  1 ||  1 | 1 | x'[0] = a (kept) -> 1 (equal)
 6 |  0  0 |  1  1  1 ||  0 | 1 | x'[1] = b XOR [1,0,0] -> 0 (differs)
 7 |  0  0 |  1  1  0 ||  1 | 1 | x'[2] = c XOR [0,0,0] -> 1 (equal)
"""
# item 0 kept (zero scrambler), item 1 scrambled with [1,0,0], item 2 "scrambled" with the all-zero mask
COMPARISON_SCRAMBLERS = torch.tensor([[[0, 0, 0], [1, 0, 0], [0, 0, 0]]], dtype=torch.float32)

EQUALITY_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0 | 0 | recall marker
 5 |  0  0 |  1  0  1 ||  0 | 0 | x'[0] = a XOR [0,0,0]
 6 |  0  0 |  0  0  1 ||  0 | 0 | x'[1] = b XOR [0,1,0]
 7 |  0  0 |  0  1  0 ||  0 | 1 | x'[2] = c XOR [1,0,0]; scored -> 0 (not equal)
"""
EQUALITY_SCRAMBLERS = torch.tensor([[[0, 0, 0], [0, 1, 0], [1, 0, 0]]], dtype=torch.float32)

EQUALITY_HARD_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0 | 0 | recall marker
 5 |  0  0 |  1  0  1 ||  0 | 0 | x'[0] = a
 6 |  0  0 |  0  1  1 ||  0 | 0 | x'[1] = b
 7 |  0  0 |  0  1  0 ||  0 | 1 | x'[2] = c XOR [1,0,0] (only item 2 scrambled); scored -> 0
"""
EQUALITY_HARD_SCRAMBLERS = torch.tensor([[[0, 0, 0], [0, 0, 0], [1, 0, 0]]], dtype=torch.float32)

SYMMETRY_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0 | 0 | recall marker
 5 |  0  0 |  1  1  0 ||  0 | 0 | x'[0] = c
 6 |  0  0 |  0  1  1 ||  0 | 0 | x'[1] = b
 7 |  0  0 |  1  0  1 ||  1 | 1 | x'[2] = a; scored -> 1 (symmetric)
"""

ANTISYMMETRY_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0 | 0 | recall marker
 5 |  0  0 |  1  1  0 ||  0 | 0 | x'[0] = c XOR [0,0,0]
 6 |  0  0 |  0  0  1 ||  0 | 0 | x'[1] = b XOR [0,1,0]
 7 |  0  0 |  0  0  1 ||  1 | 1 | x'[2] = a XOR [1,0,0]; scored -> 1 (not symmetric)
"""
NO_SCRAMBLING = torch.zeros(1, 3, 3)
TASKS = [SequenceComparison, SequenceEquality, SequenceSymmetry]


def make(cls: type = SequenceComparison, **overrides):
    values = {"batch_size": 4, "control_bits": 2, "data_bits": 3, "min_sequence_length": 1,
              "max_sequence_length": 6, "size": 40}
    values.update(overrides)
    return cls(cls.Params(**values))


def assert_batch_is(batch: dict, table: str) -> None:
    sequences, targets, masks = parse_example(table)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)
    assert batch["sequences_length"].tolist() == [[3]]
    assert batch["num_subsequences"].tolist() == [[1]]


def assert_same_batches(first: list, second: list) -> None:
    for x, y in zip(first, second, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


# --- SequenceComparison (§3.1) ----------------------------------------------------------------------
def test_comparison_worked_example_is_reproduced_bit_exactly():
    batch = make().build_batch(ITEMS, COMPARISON_SCRAMBLERS, NO_CONTROL_LINE)
    assert_batch_is(batch, COMPARISON_EXAMPLE)


def test_comparison_inequality_inverts_every_answer():
    batch = make(inequality=True).build_batch(ITEMS, COMPARISON_SCRAMBLERS, NO_CONTROL_LINE)
    _, targets, masks = parse_example(COMPARISON_EXAMPLE)
    assert torch.equal(batch["masks"], masks)
    assert batch["targets"][0, 5:, 0].tolist() == [0, 1, 0]
    assert (batch["targets"][0, :5] == 0).all()


def test_comparison_generated_batches_follow_the_layout():
    problem = make(control_bits=4, data_bits=5, min_sequence_length=2, max_sequence_length=7)
    problem.seed(5)
    lengths = set()
    for _ in range(20):
        batch = problem.generate_batch(6)
        check_values(problem.name, batch, problem.output_definitions)
        length = int(batch["sequences_length"][0])
        lengths.add(length)
        steps = 2 * length + 2
        assert batch["sequences"].shape == (6, steps, 9)
        assert batch["targets"].shape == (6, steps, 1) and batch["masks"].shape == (6, steps, 1)
        recall = slice(length + 2, steps)
        # every recall step is scored, nothing else
        assert (batch["masks"][:, recall] == 1).all() and batch["masks"].sum() == 6 * length
        assert (batch["targets"][batch["masks"] == 0] == 0).all()
        control, data = batch["sequences"][..., :4], batch["sequences"][..., 4:]
        assert (control[:, 0] == torch.tensor([1.0, 0, 0, 0])).all() and (data[:, 0] == 0).all()
        assert (control[:, length + 1] == torch.tensor([0, 1.0, 0, 0])).all() and (data[:, length + 1] == 0).all()
        assert (control[:, 1:length + 1] == 0).all()
        ctrl = control[0, length + 2]
        assert (control[:, recall] == ctrl).all() and ctrl.sum() == 1 and ctrl[:2].sum() == 0
        # the label is recomputed from the bits of x and x'
        equal = (data[:, 1:length + 1] == data[:, recall]).all(-1).float()
        assert torch.equal(batch["targets"][:, recall, 0], equal)
    assert len(lengths) > 3


def test_comparison_class_balance_follows_the_spec():
    """P(target = 1) = 0.5 + 0.5 (1 - bias)^D; half the items are kept."""
    for bias in (0.5, 0.25):
        problem = make(data_bits=3, min_sequence_length=5, max_sequence_length=5, bias=bias)
        problem.seed(1)
        batch = problem.generate_batch(2000)
        answers = batch["targets"][:, 7:, 0]
        assert float(answers.mean()) == pytest.approx(0.5 + 0.5 * (1 - bias) ** 3, abs=0.015)
    # with bias 0 every scrambler is zero: all items equal
    batch = make(bias=0.0).generate_batch(8)
    assert (batch["targets"][batch["masks"] == 1] == 1).all()


# --- SequenceEquality (§3.2) and SequenceSymmetry (§3.3) --------------------------------------------
@pytest.mark.parametrize("cls, overrides, scramblers, table", [
    (SequenceEquality, {}, EQUALITY_SCRAMBLERS, EQUALITY_EXAMPLE),
    (SequenceEquality, {"hard": True}, EQUALITY_HARD_SCRAMBLERS, EQUALITY_HARD_EXAMPLE),
    (SequenceSymmetry, {}, NO_SCRAMBLING, SYMMETRY_EXAMPLE),
    (SequenceSymmetry, {"antisymmetry": True}, EQUALITY_SCRAMBLERS, ANTISYMMETRY_EXAMPLE),
], ids=["equality", "equality-hard", "symmetry", "antisymmetry"])
def test_worked_examples_are_reproduced_bit_exactly(cls, overrides, scramblers, table):
    batch = make(cls, **overrides).build_batch(ITEMS, scramblers, NO_CONTROL_LINE)
    assert_batch_is(batch, table)


@pytest.mark.parametrize("cls, flag, reference", [
    (SequenceEquality, "inequality", ITEMS),
    (SequenceSymmetry, "antisymmetry", ITEMS.flip(1)),
])
def test_whole_sequence_answers_and_their_inversion(cls, flag, reference):
    """Intact x' -> 1, scrambled -> 0; the flag swaps them; an all-zero scrambler leaves x' intact (-> 1)."""
    for invert in (False, True):
        problem = make(cls, **{flag: invert})
        intact = problem.build_batch(ITEMS, NO_SCRAMBLING, NO_CONTROL_LINE)
        assert torch.equal(intact["sequences"][0, 5:, 2:], reference[0])
        assert intact["targets"][0, 7, 0] == (0 if invert else 1)
        scrambled = problem.build_batch(ITEMS, EQUALITY_HARD_SCRAMBLERS, NO_CONTROL_LINE)
        assert scrambled["targets"][0, 7, 0] == (1 if invert else 0)
        assert scrambled["targets"][0, :7].sum() == 0 and scrambled["masks"][0, :, 0].tolist() == [0] * 7 + [1]


@pytest.mark.parametrize("cls", [SequenceEquality, SequenceSymmetry])
@pytest.mark.parametrize("hard", [False, True])
def test_whole_sequence_generated_batches(cls, hard):
    problem = make(cls, hard=hard, control_bits=3, data_bits=4, min_sequence_length=2, max_sequence_length=6)
    problem.seed(9)
    most_differing_items = 0
    for _ in range(20):
        batch = problem.generate_batch(50)
        check_values(problem.name, batch, problem.output_definitions)
        length = int(batch["sequences_length"][0])
        steps = 2 * length + 2
        assert batch["targets"].shape == (50, steps, 1)
        # only the last step is scored, and targets are zero elsewhere
        assert batch["masks"].sum() == 50 and (batch["masks"][:, -1] == 1).all()
        assert (batch["targets"][:, :-1] == 0).all()
        data = batch["sequences"][..., 3:]
        stored = data[:, 1:length + 1]
        reference = stored if cls is SequenceEquality else stored.flip(1)
        differing = (data[:, length + 2:] != reference).any(-1)  # [B, L]
        assert torch.equal(batch["targets"][:, -1, 0], (~differing.any(1)).float())
        most_differing_items = max(most_differing_items, int(differing.sum(1).max()))
        # the control line sits on the recall steps only
        control = batch["sequences"][..., :3]
        assert (control[:, length + 2:] == control[0, length + 2]).all() and control[0, length + 2, 2] == 1
    # hard: x' differs in at most one item; otherwise whole sequences are scrambled
    assert most_differing_items == 1 if hard else most_differing_items >= 3


@pytest.mark.parametrize("cls", [SequenceEquality, SequenceSymmetry])
@pytest.mark.parametrize("hard", [False, True])
def test_whole_sequence_class_balance_follows_the_spec(cls, hard):
    """P(target = 1) = 0.5 + 0.5 (1 - bias)^(L D), with hard 0.5 + 0.5 (1 - bias)^D (L = 2, D = 2 here)."""
    problem = make(cls, hard=hard, data_bits=2, min_sequence_length=2, max_sequence_length=2)
    problem.seed(2)
    answers = problem.generate_batch(8000)["targets"][:, -1, 0]
    expected = 0.5 + 0.5 * 0.5 ** (2 if hard else 4)
    assert float(answers.mean()) == pytest.approx(expected, abs=0.015)


# --- what the three tasks share -------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASKS)
def test_registered_with_one_output_bit(cls):
    assert get_problem(cls.__name__) is cls
    problem = make(cls, control_bits=3, data_bits=5)
    assert problem.default_values == {"input_item_size": 8, "output_item_size": 1, "store_bit": 0, "recall_bit": 1}
    assert problem.output_definitions["targets"].shape == (-1, -1, 1)
    assert problem.prediction_definitions["predictions"].shape == (-1, -1, 1)
    params = cls.Params()
    assert (params.control_bits, params.data_bits, params.bias) == (2, 8, 0.5)


@pytest.mark.parametrize("cls", TASKS)
def test_mip_list_shows_the_docs_and_every_parameter(cls):
    """The catalogue reads the sources: the task's own parameters and those of the base it extends."""
    info = catalogue.describe("problems", cls.__name__)
    assert [p.name for p in info.params] == [f.name for f in dataclasses.fields(cls.Params)]
    assert "Example (D = 3)" in info.doc and all(p.doc for p in info.params)


@pytest.mark.parametrize("cls", TASKS)
def test_same_seed_gives_the_same_batches_built_from_the_drawn_values(cls):
    one, two = make(cls, control_bits=4), make(cls, control_bits=4)
    one.seed(21)
    two.seed(21)
    global_state = torch.get_rng_state()
    batches = [one.generate_batch(5) for _ in range(4)]
    assert torch.equal(torch.get_rng_state(), global_state)
    # generate_batch = build_batch(**draw_values(...)): the drawn values rebuild the same batches
    assert_same_batches(batches, [two.build_batch(**two.draw_values(5)) for _ in range(4)])
    two.seed(22)
    assert any(not torch.equal(b["sequences"], two.generate_batch(5)["sequences"]) for b in batches)


@pytest.mark.parametrize("cls", TASKS)
def test_loss_and_accuracy_score_one_bit_per_scored_step(cls):
    problem = make(cls)
    batch = problem.build_batch(ITEMS.expand(2, -1, -1), COMPARISON_SCRAMBLERS.expand(2, -1, -1), NO_CONTROL_LINE)
    scored = int(batch["masks"].sum())
    assert scored == (6 if cls is SequenceComparison else 2)
    perfect = torch.where(batch["targets"] == 1, 3.0, -3.0)
    stats = problem.statistics(batch, perfect)
    assert stats["acc"] == (float(scored), float(scored)) and stats["seq_length"] == 3
    # one wrong answer on a scored step; any output on unscored steps does not count
    wrong = perfect.clone()
    wrong[1, 7, 0] = -wrong[1, 7, 0]
    wrong[:, :5] = 9.0
    assert problem.statistics(batch, wrong)["acc"].value == pytest.approx((scored - 1) / scored)
    logits = torch.randn(2, 8, 1, generator=torch.Generator().manual_seed(0))
    mask = batch["masks"].bool()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], batch["targets"][mask])
    assert torch.allclose(problem.loss(batch, logits), expected)


@pytest.mark.parametrize("cls", TASKS)
def test_curriculum_bounds_the_length(cls):
    problem = make(cls, max_sequence_length=12)
    problem.curriculum_start(cls.CurriculumParams(initial_max_sequence_length=2))
    assert max(int(problem.generate_batch(2)["sequences_length"].max()) for _ in range(30)) == 2
    problem.curriculum_update(9, 5)  # two epochs done
    assert problem.max_sequence_length == 4


@pytest.mark.parametrize("cls", TASKS)
def test_plot_shows_the_one_bit_answers_over_time(cls):
    problem = make(cls)
    batch = problem.build_batch(ITEMS.expand(2, -1, -1), COMPARISON_SCRAMBLERS.expand(2, -1, -1), NO_CONTROL_LINE)
    frames = problem.plot(batch, 1, torch.randn(2, 8, 1))
    assert isinstance(frames, Frames) and isinstance(frames.figure, Figure) and len(frames) == 8
    titles = [ax.get_title(loc="left") for ax in frames.figure.axes if ax.get_title(loc="left")]
    assert any(title.startswith("bits where x' differs") for title in titles)
    assert {"target", "prediction (sigmoid of the logit)", "mask (scored steps)"} <= set(titles)
    frames.update(3)
    without = problem.plot(batch, 0)
    assert not any("prediction" in ax.get_title(loc="left") for ax in without.figure.axes)


def test_plot_marks_the_bits_where_x_prime_differs():
    problem = make(SequenceComparison)
    batch = problem.build_batch(ITEMS, COMPARISON_SCRAMBLERS, NO_CONTROL_LINE)
    frames = problem.plot(batch, 0)
    axes = [ax for ax in frames.figure.axes if ax.get_title(loc="left").startswith("bits where")]
    shown = axes[0].images[0].get_array()
    assert shown.shape == (3, 8) and shown.sum() == 1 and shown[0, 6] == 1  # b XOR [1,0,0] at t = 6, bit 0

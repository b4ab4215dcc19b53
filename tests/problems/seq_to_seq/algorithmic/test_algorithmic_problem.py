"""Tests of the algorithmic sequence-to-sequence tasks against the original MI-Prometheus generators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from miprometheus.data import check_values
from miprometheus.errors import ConfigError
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.problems.seq_to_seq.algorithmic.reverse_recall import ReverseRecall
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall
from miprometheus.registry import get_problem
from tests.algorithmic_examples import parse_example

# The items of the worked examples: x = a, b, c.
A, B, C = [1, 0, 1], [0, 1, 1], [1, 1, 0]
ITEMS = torch.tensor([[A, B, C]], dtype=torch.float32)

# Worked examples of the original generators, verbatim: t | control bits | data bits || target bits | mask | role.
SERIAL_RECALL_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
 6 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
 7 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
"""

SERIAL_RECALL_CONTROL_LINES_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0  0  1 |  0  0  0 ||  1  0  1 | 1 | recall step (control line bit 3) -> a
 6 |  0  0  0  1 |  0  0  0 ||  0  1  1 | 1 | recall step (control line bit 3) -> b
 7 |  0  0  0  1 |  0  0  0 ||  1  1  0 | 1 | recall step (control line bit 3) -> c
"""

REVERSE_RECALL_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
 6 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
 7 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
"""


def make(cls: type = SerialRecall, **overrides) -> AlgorithmicSeqToSeqProblem:
    values = {"batch_size": 4, "control_bits": 2, "data_bits": 3, "min_sequence_length": 1,
              "max_sequence_length": 6, "size": 40}
    values.update(overrides)
    return cls(cls.Params(**values))


# --- worked examples, bit-exact ------------------------------------------------------------------
@pytest.mark.parametrize("cls, table", [(SerialRecall, SERIAL_RECALL_EXAMPLE),
                                        (ReverseRecall, REVERSE_RECALL_EXAMPLE)])
def test_worked_example_is_reproduced_bit_exactly(cls, table):
    problem = make(cls)
    batch = problem.build_batch(ITEMS, torch.zeros(2))
    sequences, targets, masks = parse_example(table)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)
    assert batch["sequences_length"].tolist() == [[3]]
    assert batch["num_subsequences"].tolist() == [[1]]


def test_worked_example_through_the_generator(monkeypatch):
    """generate_batch with the worked example's items and length fed in gives the worked example."""
    problem = make(SerialRecall, min_sequence_length=3, max_sequence_length=3, bias=0.5)
    # Uniform draws below the bias become 1: feed 0 for a 1 bit and 0.9 for a 0 bit.
    scripted = torch.where(ITEMS == 1, 0.0, 0.9)
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None: scripted)
    batch = problem.generate_batch(1)
    sequences, targets, masks = parse_example(SERIAL_RECALL_EXAMPLE)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)


@pytest.mark.parametrize("randomize", [True, False])
def test_control_lines_example_with_four_control_bits(randomize):
    problem = make(SerialRecall, control_bits=4, randomize_control_lines=randomize)
    batch = problem.build_batch(ITEMS, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    sequences, targets, masks = parse_example(SERIAL_RECALL_CONTROL_LINES_EXAMPLE)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)


def test_control_line_draws():
    randomized = make(SerialRecall, control_bits=5)
    randomized.seed(3)
    picked = {int(randomized.draw_control_line().argmax()) for _ in range(200)}
    assert picked == {2, 3, 4}
    for _ in range(20):
        assert randomized.draw_control_line().sum() == 1
    fixed = make(SerialRecall, control_bits=5, randomize_control_lines=False)
    assert fixed.draw_control_line().tolist() == [0, 0, 0, 0, 1]
    assert make(SerialRecall, control_bits=5, use_control_lines=False).draw_control_line().sum() == 0
    assert make(SerialRecall, control_bits=2).draw_control_line().sum() == 0


# --- structure of generated batches (§6) ----------------------------------------------------------
@pytest.mark.parametrize("cls", [SerialRecall, ReverseRecall])
def test_generated_batches_follow_the_canonical_layout(cls):
    problem = make(cls, batch_size=5, control_bits=4, data_bits=6, min_sequence_length=2, max_sequence_length=7)
    problem.seed(11)
    lengths = set()
    for _ in range(30):
        batch = problem.generate_batch(5)
        check_values(problem.name, batch, problem.output_definitions)
        seq, tgt, mask = batch["sequences"], batch["targets"], batch["masks"]
        length = int(batch["sequences_length"][0])
        lengths.add(length)
        assert 2 <= length <= 7
        assert seq.shape == (5, 2 * length + 2, 10) and tgt.shape == (5, 2 * length + 2, 6)
        assert mask.shape == (5, 2 * length + 2, 1)
        assert batch["sequences_length"].tolist() == [[length]] * 5
        assert (mask.sum(dim=(1, 2)) == length).all()
        assert (tgt[mask.expand_as(tgt) == 0] == 0).all()
        control, data = seq[..., :4], seq[..., 4:]
        # markers: zero data, exactly one control bit
        assert (control[:, 0] == torch.tensor([1.0, 0, 0, 0])).all() and (data[:, 0] == 0).all()
        assert (control[:, length + 1] == torch.tensor([0, 1.0, 0, 0])).all() and (data[:, length + 1] == 0).all()
        # stored items: no control bit; recall steps: no data, the same single control-line bit everywhere
        assert (control[:, 1:length + 1] == 0).all()
        recall = slice(length + 2, 2 * length + 2)
        assert (data[:, recall] == 0).all()
        ctrl = control[0, length + 2]
        assert (control[:, recall] == ctrl).all() and ctrl.sum() == 1 and ctrl[:2].sum() == 0
        items = data[:, 1:length + 1]
        expected = items if cls is SerialRecall else items.flip(1)
        assert torch.equal(tgt[:, recall], expected)
    assert len(lengths) > 3  # L is drawn per batch


def test_bias_controls_the_fraction_of_ones():
    problem = make(SerialRecall, data_bits=8, min_sequence_length=10, max_sequence_length=10, bias=0.2)
    items = problem.generate_batch(200)["sequences"][:, 1:11, 2:]
    assert abs(float(items.mean()) - 0.2) < 0.02
    assert make(SerialRecall, bias=0.0).generate_batch(8)["sequences"][..., 2:].sum() == 0


def test_definitions_and_default_values():
    problem = make(SerialRecall, control_bits=3, data_bits=5)
    assert problem.default_values == {"input_item_size": 8, "output_item_size": 5, "store_bit": 0, "recall_bit": 1}
    assert problem.prediction_definitions["predictions"].shape == (-1, -1, 5)
    assert problem.output_definitions["sequences"].shape == (-1, -1, 8)
    assert problem.output_definitions["masks"].dtype == "uint8"
    assert problem.is_generator and len(problem) == 40 and problem[17] == 17


def test_dataloader_yields_generated_batches():
    problem = make(SerialRecall, size=10)
    loader = DataLoader(problem, batch_size=4, collate_fn=problem.collate_fn)
    sizes = [batch["sequences"].shape[0] for batch in loader]
    assert sizes == [4, 4, 2]
    assert problem.batches_per_epoch() == 3


def test_registry_finds_the_tasks():
    assert get_problem("SerialRecall") is SerialRecall
    assert get_problem("ReverseRecall") is ReverseRecall


# --- loss and accuracy (§1.6, §1.7) ---------------------------------------------------------------
def example_batch(batch_size: int = 2) -> dict:
    return make(SerialRecall).build_batch(ITEMS.expand(batch_size, -1, -1), torch.zeros(2))


def test_masked_loss_is_the_mean_over_scored_bits():
    problem = make(SerialRecall)
    batch = example_batch()
    logits = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(0))
    scored = slice(5, 8)
    expected = F.binary_cross_entropy_with_logits(logits[:, scored], batch["targets"][:, scored])
    assert torch.allclose(problem.loss(batch, logits), expected)
    # outputs on unscored steps do not matter
    changed = logits.clone()
    changed[:, :5] = 100.0
    assert torch.allclose(problem.loss(batch, changed), expected)


def test_unmasked_loss_is_the_plain_mean():
    problem = make(SerialRecall, use_mask=False)
    batch = example_batch()
    logits = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(1))
    expected = F.binary_cross_entropy_with_logits(logits, batch["targets"])
    assert torch.allclose(problem.loss(batch, logits), expected)


def test_accuracy_is_per_bit_on_scored_steps_and_logit_zero_predicts_zero():
    problem = make(SerialRecall)
    batch = example_batch()
    perfect = torch.where(batch["targets"] == 1, 2.0, -2.0)
    assert problem.statistics(batch, perfect)["acc"].value == 1.0
    # a logit of exactly 0 predicts 0: only the three 0 bits of a, b, c (out of 9) are right
    zeros = torch.zeros(2, 8, 3)
    assert problem.statistics(batch, zeros)["acc"].value == pytest.approx(3 / 9)
    # one wrong bit of 18 scored bits
    one_wrong = perfect.clone()
    one_wrong[1, 6, 0] = 5.0
    assert problem.statistics(batch, one_wrong)["acc"].value == pytest.approx(17 / 18)
    # unscored steps do not count
    noisy = perfect.clone()
    noisy[:, :5] = 7.0
    assert problem.statistics(batch, noisy)["acc"].value == 1.0


def test_unmasked_accuracy_counts_every_bit():
    problem = make(SerialRecall, use_mask=False)
    batch = example_batch()
    # all-zero logits predict 0 everywhere: wrong only on the 6 one-bits of 24 per sample
    assert problem.statistics(batch, torch.zeros(2, 8, 3))["acc"].value == pytest.approx(18 / 24)


def test_statistics():
    problem = make(SerialRecall, max_sequence_length=6)
    batch = example_batch(batch_size=2)
    stats = problem.statistics(batch, torch.zeros(2, 8, 3))
    assert set(stats) == set(problem.statistic_definitions)
    assert stats["seq_length"] == 3 and stats["max_seq_length"] == 6 and stats["batch_size"] == 2
    assert stats["acc"] == (6.0, 18.0)  # correct bits / scored bits (the 2 x 3 x 3 recall bits)
    # one number each: a float, or a 0-d tensor left on the device for the Trainer's read-back in blocks
    assert all(isinstance(v, float) or (isinstance(v, torch.Tensor) and v.ndim == 0)
               for k, v in stats.items() if k != "acc")


# --- determinism and resume ---------------------------------------------------------------------
def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for x, y in zip(first, second):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_same_seed_gives_same_batches_and_leaves_the_global_rng_alone():
    one, two = make(SerialRecall, control_bits=4), make(SerialRecall, control_bits=4)
    one.seed(123)
    two.seed(123)
    global_state = torch.get_rng_state()
    batches_one = [one.generate_batch(4) for _ in range(5)]
    assert torch.equal(torch.get_rng_state(), global_state)
    assert_same_batches(batches_one, [two.generate_batch(4) for _ in range(5)])
    two.seed(124)
    assert any(not torch.equal(a["sequences"], two.generate_batch(4)["sequences"]) for a in batches_one)


def test_state_dict_resumes_the_exact_stream():
    problem = make(ReverseRecall, control_bits=5)
    problem.seed(7)
    for _ in range(3):
        problem.generate_batch(4)
    state = problem.state_dict()
    expected = [problem.generate_batch(4) for _ in range(4)]

    resumed = make(ReverseRecall, control_bits=5)
    resumed.load_state_dict(state)
    assert_same_batches([resumed.generate_batch(4) for _ in range(4)], expected)
    assert "generator" in state and "max_sequence_length" in state


# --- curriculum learning (§1.9, intended behaviour) ----------------------------------------------
def test_curriculum_grows_by_one_per_epoch_until_the_configured_maximum():
    problem = make(SerialRecall, min_sequence_length=1, max_sequence_length=6)
    problem.curriculum_start(SerialRecall.CurriculumParams(initial_max_sequence_length=3))
    assert problem.max_sequence_length == 3
    assert problem.curriculum_update(0, 10) is False and problem.max_sequence_length == 3
    assert problem.curriculum_update(8, 10) is False and problem.max_sequence_length == 3
    assert problem.curriculum_update(9, 10) is False and problem.max_sequence_length == 4
    assert problem.curriculum_update(19, 10) is False and problem.max_sequence_length == 5
    assert problem.curriculum_update(29, 10) is True and problem.max_sequence_length == 6
    assert problem.curriculum_update(99, 10) is True and problem.max_sequence_length == 6


def test_curriculum_bounds_generated_lengths_and_statistics():
    problem = make(SerialRecall, min_sequence_length=1, max_sequence_length=20)
    problem.curriculum_start(SerialRecall.CurriculumParams(initial_max_sequence_length=2))
    problem.curriculum_update(0, 5)
    batches = [problem.generate_batch(2) for _ in range(40)]
    assert max(int(b["sequences_length"].max()) for b in batches) == 2
    assert problem.statistics(batches[0], torch.zeros_like(batches[0]["targets"]))["max_seq_length"] == 2


def test_curriculum_state_is_saved_and_restored():
    problem = make(SerialRecall, max_sequence_length=9)
    problem.curriculum_start(SerialRecall.CurriculumParams(initial_max_sequence_length=2))
    problem.curriculum_update(14, 5)  # three epochs done
    assert problem.max_sequence_length == 5
    state = problem.state_dict()
    expected = [problem.generate_batch(3) for _ in range(3)]

    resumed = make(SerialRecall, max_sequence_length=9)
    resumed.load_state_dict(state)
    assert resumed.max_sequence_length == 5
    assert_same_batches([resumed.generate_batch(3) for _ in range(3)], expected)
    assert resumed.curriculum_update(19, 5) is False and resumed.max_sequence_length == 6


def test_curriculum_already_at_the_maximum_is_done_at_once():
    problem = make(SerialRecall, max_sequence_length=4)
    problem.curriculum_start(SerialRecall.CurriculumParams(initial_max_sequence_length=4))
    assert problem.curriculum_update(0, 100) is True


@pytest.mark.parametrize("initial", [0, 7])
def test_curriculum_initial_length_outside_the_range_is_a_config_error(initial):
    problem = make(SerialRecall, min_sequence_length=1, max_sequence_length=6)
    with pytest.raises(ConfigError, match="initial_max_sequence_length"):
        problem.curriculum_start(SerialRecall.CurriculumParams(initial_max_sequence_length=initial))


# --- parameter validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, name", [
    ({"control_bits": 1}, "control_bits"),
    ({"data_bits": 0}, "data_bits"),
    ({"min_sequence_length": 0}, "min_sequence_length"),
    ({"min_sequence_length": 5, "max_sequence_length": 3}, "max_sequence_length"),
    ({"bias": 1.5}, "bias"),
    ({"bias": -0.1}, "bias"),
    ({"size": 0}, "size"),
    ({"batch_size": 0}, "batch_size"),
])
def test_invalid_parameters_raise_config_error_naming_the_parameter(overrides, name):
    with pytest.raises(ConfigError, match=name):
        make(SerialRecall, **overrides)


def test_defaults_follow_the_spec():
    params = SerialRecall.Params()
    assert (params.control_bits, params.data_bits, params.bias, params.size) == (2, 8, 0.5, 1_000_000)
    assert params.use_mask and params.use_control_lines and params.randomize_control_lines
    batch = SerialRecall(params).generate_batch(2)
    assert batch["sequences"].shape[-1] == 10 and batch["targets"].shape[-1] == 8

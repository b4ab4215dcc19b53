"""Tests of the simple algorithmic tasks against the original MI-Prometheus generators.

Every worked example (produced by running the original generators) is fed to ``build_batch`` and compared
bit-exactly; random draws are compared with a slow per-sample reference written from the tasks' definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from miprometheus.data import check_values
from miprometheus.errors import ConfigError
from miprometheus.plotting import Frames
from miprometheus.problems.seq_to_seq.algorithmic.manipulation_spatial_not import ManipulationSpatialNot
from miprometheus.problems.seq_to_seq.algorithmic.manipulation_spatial_rotation import ManipulationSpatialRotation
from miprometheus.problems.seq_to_seq.algorithmic.manipulation_temporal_rotation import ManipulationTemporalRotation
from miprometheus.problems.seq_to_seq.algorithmic.repeat_reverse_recall import RepeatReverseRecall
from miprometheus.problems.seq_to_seq.algorithmic.repeat_serial_recall import RepeatSerialRecall
from miprometheus.problems.seq_to_seq.algorithmic.scratch_pad import ScratchPad
from miprometheus.problems.seq_to_seq.algorithmic.skip_recall import SkipRecall
from miprometheus.problems.seq_to_seq.algorithmic.transforms import bit_shift, rotate_seq, shift_amount
from miprometheus.registry import get_problem
from tests.algorithmic_examples import parse_example

TASKS = [RepeatSerialRecall, RepeatReverseRecall, ScratchPad, SkipRecall, ManipulationTemporalRotation,
         ManipulationSpatialNot, ManipulationSpatialRotation]

# The items of the worked examples: x = a, b, c; extra items u, v.
A, B, C = [1, 0, 1], [0, 1, 1], [1, 1, 0]
U, V = [1, 1, 1], [0, 0, 1]
ITEMS = torch.tensor([[A, B, C]], dtype=torch.float32)
NO_CONTROL_LINE = torch.zeros(2)

# Worked examples of the original generators, verbatim: t | control bits | data bits || target bits | mask | role.
REPEAT_SERIAL_RECALL = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker #1
 5 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
 6 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
 7 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
 8 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker #2
 9 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
10 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
11 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
"""

SCRATCH_PAD = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker (x_1 starts)
 1 |  0  0 |  1  1  1 ||  0  0  0 | 0 | x_1[0] = u
 2 |  0  0 |  0  0  1 ||  0  0  0 | 0 | x_1[1] = v
 3 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker (x_2 starts)
 4 |  0  0 |  1  0  1 ||  0  0  0 | 0 | x_2[0] = a
 5 |  0  0 |  0  1  1 ||  0  0  0 | 0 | x_2[1] = b
 6 |  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[2] = c
 7 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 8 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
 9 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
10 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
"""

REPEAT_REVERSE_RECALL = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker #1
 5 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
 6 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
 7 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
 8 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker #2
 9 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> c
10 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> b
11 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> a
"""

SKIP_RECALL_FROM_0 = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> x[0] = a
 6 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> x[2] = c
"""

SKIP_RECALL_FROM_1 = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> x[1] = b
"""

TEMPORAL_ROTATION_HALF = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> x[1] = b
 6 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> x[2] = c
 7 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> x[0] = a
"""

TEMPORAL_ROTATION_ONE = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> x[2] = c
 6 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> x[0] = a
 7 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> x[1] = b
"""

SPATIAL_NOT = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  0  1  0 | 1 | recall step -> NOT a
 6 |  0  0 |  0  0  0 ||  1  0  0 | 1 | recall step -> NOT b
 7 |  0  0 |  0  0  0 ||  0  0  1 | 1 | recall step -> NOT c
"""

SPATIAL_ROTATION_HALF = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> a, bits shifted right by 2
 6 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> b, bits shifted right by 2
 7 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> c, bits shifted right by 2
"""

SPATIAL_ROTATION_ONE = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker
 1 |  0  0 |  1  0  1 ||  0  0  0 | 0 | item x[0] = a
 2 |  0  0 |  0  1  1 ||  0  0  0 | 0 | item x[1] = b
 3 |  0  0 |  1  1  0 ||  0  0  0 | 0 | item x[2] = c
 4 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 5 |  0  0 |  0  0  0 ||  1  1  0 | 1 | recall step -> a, bits shifted right by 1
 6 |  0  0 |  0  0  0 ||  1  0  1 | 1 | recall step -> b, bits shifted right by 1
 7 |  0  0 |  0  0  0 ||  0  1  1 | 1 | recall step -> c, bits shifted right by 1
"""


def make(cls: type, **overrides):
    values = {"batch_size": 4, "control_bits": 2, "data_bits": 3, "min_sequence_length": 1,
              "max_sequence_length": 6, "size": 40}
    values.update(overrides)
    return cls(cls.Params(**values))


# --- worked examples, bit-exact ------------------------------------------------------------------------
# (task, parameter overrides, the values fed to build_batch, table, sequences_length, num_subsequences)
EXAMPLES = [
    (RepeatSerialRecall, {}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE, "recall_number": 2},
     REPEAT_SERIAL_RECALL, 3, 1),
    (ScratchPad, {}, {"subsequences": [torch.tensor([[U, V]], dtype=torch.float32), ITEMS],
                      "ctrl_aux": NO_CONTROL_LINE}, SCRATCH_PAD, 3, 2),
    (RepeatReverseRecall, {}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE, "recall_number": 2},
     REPEAT_REVERSE_RECALL, 3, 1),
    (SkipRecall, {"seq_start": 0, "skip_step": 2}, {"items": ITEMS}, SKIP_RECALL_FROM_0, 3, 1),
    (SkipRecall, {"seq_start": 1, "skip_step": 2, "min_sequence_length": 2}, {"items": ITEMS},
     SKIP_RECALL_FROM_1, 3, 1),
    (ManipulationTemporalRotation, {"num_items": 0.5}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE},
     TEMPORAL_ROTATION_HALF, 3, 1),
    (ManipulationTemporalRotation, {"num_items": 1}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE},
     TEMPORAL_ROTATION_ONE, 3, 1),
    (ManipulationSpatialNot, {}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE}, SPATIAL_NOT, 3, 1),
    (ManipulationSpatialRotation, {"num_bits_shifted": 0.5}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE},
     SPATIAL_ROTATION_HALF, 3, 1),
    (ManipulationSpatialRotation, {"num_bits_shifted": 1}, {"items": ITEMS, "ctrl_aux": NO_CONTROL_LINE},
     SPATIAL_ROTATION_ONE, 3, 1),
]


@pytest.mark.parametrize("cls, overrides, values, table, length, subsequences", EXAMPLES,
                         ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(EXAMPLES)])
def test_worked_example_is_reproduced_bit_exactly(cls, overrides, values, table, length, subsequences):
    problem = make(cls, **overrides)
    batch = problem.build_batch(**values)
    sequences, targets, masks = parse_example(table)
    assert set(batch) == set(problem.output_definitions)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)
    assert batch["sequences_length"].tolist() == [[length]] and batch["sequences_length"].dtype == torch.int32
    assert batch["num_subsequences"].tolist() == [[subsequences]] and batch["num_subsequences"].dtype == torch.int8
    check_values(problem.name, batch, problem.output_definitions)


def test_repeat_serial_recall_example_with_a_control_line():
    """§1.3: the control line is on every recall step of every block, never on the markers."""
    problem = make(RepeatSerialRecall, control_bits=4)
    batch = problem.build_batch(ITEMS, torch.tensor([0.0, 0.0, 1.0, 0.0]), 2)
    control = batch["sequences"][0, :, :4]
    recall_steps = [5, 6, 7, 9, 10, 11]
    assert control[recall_steps].tolist() == [[0, 0, 1, 0]] * 6
    assert control[[0, 4, 8]].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    assert control[1:4].sum() == 0


def test_skip_recall_ignores_control_lines():
    problem = make(SkipRecall, control_bits=4, use_control_lines=True)
    problem.seed(0)
    for _ in range(10):
        batch = problem.generate_batch(3)
        length = int(batch["sequences_length"][0])
        assert batch["sequences"][:, length + 2:, :4].sum() == 0


# --- the shared transforms (§1.10) ---------------------------------------------------------------------
@pytest.mark.parametrize("amount, size, expected", [
    (0.5, 3, 2), (0.5, 5, 2), (0.5, 7, 4), (0.5, 8, 4), (0.5, 2, 1), (0.5, 1, 0),  # half to even
    (-0.5, 3, -2), (0.25, 6, 2), (-0.25, 6, -2), (0.1, 5, 0),
    (1, 3, 1), (-1, 3, -1), (1.5, 3, 2), (2.5, 3, 2), (-1.5, 3, -2), (4, 3, 4),  # absolute from |amount| >= 1
    (0.0, 9, 0),
])
def test_shift_amount_rounds_half_to_even(amount, size, expected):
    assert shift_amount(amount, size) == expected
    assert expected == int(np.round(amount * size if -1 < amount < 1 else amount))


def test_rotate_seq_rotates_items_to_the_right():
    x = torch.arange(5.0).view(1, 5, 1)
    assert rotate_seq(x, 1).flatten().tolist() == [4, 0, 1, 2, 3]
    assert rotate_seq(x, -1).flatten().tolist() == [1, 2, 3, 4, 0]
    assert rotate_seq(x, 0.5).flatten().tolist() == [3, 4, 0, 1, 2]  # round_he(2.5) = 2
    assert rotate_seq(x, 7).flatten().tolist() == [3, 4, 0, 1, 2]  # 7 mod 5
    assert rotate_seq(x, -0.5).flatten().tolist() == [2, 3, 4, 0, 1]


def test_bit_shift_rotates_bits_towards_higher_indices():
    a = torch.tensor([[[1.0, 0, 1]]])
    assert bit_shift(a, 0.5).flatten().tolist() == [0, 1, 1]
    assert bit_shift(a, 1).flatten().tolist() == [1, 1, 0]
    byte = torch.tensor([[[1.0, 1, 0, 0, 0, 0, 0, 1]]])
    assert bit_shift(byte, 0.5).flatten().tolist() == [0, 0, 0, 1, 1, 1, 0, 0]  # the nibbles swap


# --- random draws against a per-sample reference (§6) ---------------------------------------------------
def reference_rows(problem, values: dict, b: int) -> list[tuple[list, list, list, int]]:
    """Sample b of the batch as rows (control, data, target, mask), written step by step from the definition."""
    c, d = problem.control_bits, problem.data_bits
    zero_data = [0.0] * d
    ctrl = values["ctrl_aux"].tolist() if "ctrl_aux" in values else [0.0] * c
    store, recall = [1.0, 0.0] + [0.0] * (c - 2), [0.0, 1.0] + [0.0] * (c - 2)

    def stored(items: list[list[float]]) -> list:
        return [([0.0] * c, item, zero_data, 0) for item in items]

    def answers(items: list[list[float]]) -> list:
        return [(ctrl, zero_data, item, 1) for item in items]

    if isinstance(problem, ScratchPad):
        subsequences = [s[b].tolist() for s in values["subsequences"]]
        rows = []
        for items in subsequences:
            rows += [(store, zero_data, zero_data, 0)] + stored(items)
        return rows + [(recall, zero_data, zero_data, 0)] + answers(subsequences[-1])
    x = values["items"][b].tolist()
    length = len(x)
    head = [(store, zero_data, zero_data, 0)] + stored(x)
    if isinstance(problem, RepeatSerialRecall):
        wanted = x[::-1] if isinstance(problem, RepeatReverseRecall) else x
        return head + ([(recall, zero_data, zero_data, 0)] + answers(wanted)) * values["recall_number"]
    if isinstance(problem, SkipRecall):
        s, k = problem.params.seq_start, problem.params.skip_step
        return head + [(recall, zero_data, zero_data, 0)] + answers([x[i] for i in range(s, length, k)])
    if isinstance(problem, ManipulationTemporalRotation):
        nu = problem.params.num_items
        rho = int(np.round(nu * length if -1 < nu < 1 else nu))
        wanted = [x[(t - rho) % length] for t in range(length)]
    elif isinstance(problem, ManipulationSpatialRotation):
        beta = problem.params.num_bits_shifted
        rho = int(np.round(beta * d if -1 < beta < 1 else beta))
        wanted = [[item[(j - rho) % d] for j in range(d)] for item in x]
    else:  # ManipulationSpatialNot
        wanted = [[1.0 - bit for bit in item] for item in x]
    return head + [(recall, zero_data, zero_data, 0)] + answers(wanted)


def expected_scored_steps(problem, values: dict) -> int:
    """§6: the number of scored steps per sample."""
    if isinstance(problem, ScratchPad):
        return values["subsequences"][-1].shape[1]
    length = values["items"].shape[1]
    if isinstance(problem, RepeatSerialRecall):
        return values["recall_number"] * length
    if isinstance(problem, SkipRecall):
        return math.ceil((length - problem.params.seq_start) / problem.params.skip_step)
    return length


RANDOM_SETTINGS = [
    (RepeatSerialRecall, {"min_recall_number": 1, "max_recall_number": 4}),
    (RepeatReverseRecall, {"min_recall_number": 2, "max_recall_number": 3}),
    (ScratchPad, {"num_subseq_min": 1, "num_subseq_max": 4}),
    (SkipRecall, {"seq_start": 1, "skip_step": 3, "min_sequence_length": 2}),
    (ManipulationTemporalRotation, {"num_items": 0.5}),
    (ManipulationTemporalRotation, {"num_items": -2}),
    (ManipulationSpatialNot, {}),
    (ManipulationSpatialRotation, {"num_bits_shifted": 0.5}),
    (ManipulationSpatialRotation, {"num_bits_shifted": -1}),
]


@pytest.mark.parametrize("cls, overrides", RANDOM_SETTINGS,
                         ids=[f"{s[0].__name__}-{i}" for i, s in enumerate(RANDOM_SETTINGS)])
def test_random_batches_match_the_reference_layout(cls, overrides):
    problem = make(cls, control_bits=4, data_bits=5, max_sequence_length=7, **overrides)
    problem.seed(5)
    for _ in range(12):
        values = problem.draw_values(3)
        batch = problem.build_batch(**values)
        check_values(problem.name, batch, problem.output_definitions)
        seq, tgt, mask = batch["sequences"], batch["targets"], batch["masks"]
        assert seq.shape[:2] == tgt.shape[:2] == mask.shape[:2] and seq.shape[0] == 3
        assert (mask.sum(dim=(1, 2)) == expected_scored_steps(problem, values)).all()
        assert (tgt[mask.expand_as(tgt) == 0] == 0).all()
        for b in range(3):
            rows = reference_rows(problem, values, b)
            assert seq[b].tolist() == [control + data for control, data, _, _ in rows]
            assert tgt[b].tolist() == [target for _, _, target, _ in rows]
            assert mask[b, :, 0].tolist() == [m for _, _, _, m in rows]


def test_random_draws_cover_the_ranges_and_are_shared_by_the_batch():
    repeat = make(RepeatSerialRecall, min_recall_number=2, max_recall_number=4, max_sequence_length=5)
    repeat.seed(1)
    draws = [repeat.draw_values(2) for _ in range(60)]
    assert {v["recall_number"] for v in draws} == {2, 3, 4}
    assert {v["items"].shape[1] for v in draws} == {1, 2, 3, 4, 5}
    pad = make(ScratchPad, num_subseq_min=2, num_subseq_max=3, min_sequence_length=2, max_sequence_length=4)
    pad.seed(1)
    draws = [pad.draw_values(2) for _ in range(60)]
    assert {len(v["subsequences"]) for v in draws} == {2, 3}
    lengths = {s.shape[1] for v in draws for s in v["subsequences"]}
    assert lengths == {2, 3, 4}
    # lengths may differ between the subsequences of one batch
    assert any(len({s.shape[1] for s in v["subsequences"]}) > 1 for v in draws)


def test_scratch_pad_reports_the_longest_subsequence_and_n():
    problem = make(ScratchPad)
    subsequences = [torch.ones(2, 4, 3), torch.zeros(2, 1, 3), torch.ones(2, 2, 3)]
    batch = problem.build_batch(subsequences, NO_CONTROL_LINE)
    assert batch["sequences_length"].tolist() == [[4], [4]]
    assert batch["num_subsequences"].tolist() == [[3], [3]]
    assert batch["sequences"].shape == (2, 5 + 2 + 3 + 1 + 2, 5)
    stats = problem.statistics(batch, torch.zeros_like(batch["targets"]))
    assert stats["seq_length"] == 4 and stats["num_subsequences"] == 3


# --- reproducibility, curriculum ----------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASKS)
def test_same_seed_gives_the_same_batches_and_generate_is_build_of_draw(cls):
    one, two = make(cls, control_bits=4), make(cls, control_bits=4)
    one.seed(42)
    two.seed(42)
    global_state = torch.get_rng_state()
    for _ in range(4):
        x, y = one.generate_batch(3), two.build_batch(**two.draw_values(3))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert torch.equal(torch.get_rng_state(), global_state)
    two.seed(43)
    assert any(not torch.equal(one.generate_batch(3)["sequences"], two.generate_batch(3)["sequences"])
               for _ in range(3))


@pytest.mark.parametrize("cls", TASKS)
def test_curriculum_bounds_only_the_lengths(cls):
    overrides = {"min_recall_number": 3, "max_recall_number": 3} if issubclass(cls, RepeatSerialRecall) else {}
    if cls is ScratchPad:
        overrides = {"num_subseq_min": 3, "num_subseq_max": 3}
    problem = make(cls, min_sequence_length=1, max_sequence_length=12, **overrides)
    problem.curriculum_start(cls.CurriculumParams(initial_max_sequence_length=2))
    problem.seed(0)
    batches = [problem.generate_batch(2) for _ in range(30)]
    assert max(int(b["sequences_length"].max()) for b in batches) == 2
    problem.curriculum_update(9, 10)  # one epoch done: the bound grows to 3
    batches = [problem.generate_batch(2) for _ in range(30)]
    assert max(int(b["sequences_length"].max()) for b in batches) == 3
    stats = problem.statistics(batches[0], torch.zeros_like(batches[0]["targets"]))
    assert stats["max_seq_length"] == 3
    if "num_recalls" in stats:
        assert stats["num_recalls"] == 3
    if cls is ScratchPad:
        assert all(int(b["num_subsequences"][0]) == 3 for b in batches)


# --- statistics ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASKS)
def test_masked_statistics_and_loss_match_a_direct_computation(cls):
    problem = make(cls, control_bits=3)
    problem.seed(9)
    batch = problem.generate_batch(4)
    logits = torch.randn(batch["targets"].shape, generator=torch.Generator().manual_seed(3))
    stats = problem.statistics(batch, logits)
    assert set(stats) == set(problem.statistic_definitions)
    scored = batch["masks"][..., 0].bool()  # [B, T]
    predicted, wanted = (logits > 0).float()[scored], batch["targets"][scored]  # [scored steps, D]
    assert stats["acc"].count == predicted.numel()
    assert stats["acc"].value == pytest.approx(float((predicted == wanted).float().mean()))
    expected_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[scored], wanted)
    assert torch.allclose(problem.loss(batch, logits), expected_loss)
    assert stats["seq_length"] == float(batch["sequences_length"].max())
    assert stats["batch_size"] == 4.0


def test_repeat_tasks_report_the_number_of_recalls():
    problem = make(RepeatReverseRecall)
    batch = problem.build_batch(ITEMS.expand(2, -1, -1), NO_CONTROL_LINE, 4)
    stats = problem.statistics(batch, torch.zeros_like(batch["targets"]))
    assert stats["num_recalls"] == 4.0 and stats["seq_length"] == 3.0
    assert stats["acc"].count == 2 * 4 * 3 * 3


# --- parameters, registry, docs, plot --------------------------------------------------------------------
@pytest.mark.parametrize("cls, overrides, name", [
    (RepeatSerialRecall, {"min_recall_number": 0}, "min_recall_number"),
    (RepeatReverseRecall, {"min_recall_number": 4, "max_recall_number": 3}, "max_recall_number"),
    (ScratchPad, {"num_subseq_min": 0}, "num_subseq_min"),
    (ScratchPad, {"num_subseq_min": 3, "num_subseq_max": 2}, "num_subseq_max"),
    (ScratchPad, {"num_subseq_max": 128}, "num_subseq_max"),
    (SkipRecall, {"seq_start": 2, "min_sequence_length": 2}, "must exceed seq_start"),
    (SkipRecall, {"skip_step": 0}, "skip_step"),
    (SkipRecall, {"seq_start": -1}, "seq_start"),
    (ManipulationTemporalRotation, {"data_bits": 1}, "data_bits"),
    (ManipulationSpatialRotation, {"data_bits": 1}, "data_bits"),
    (ManipulationSpatialNot, {"min_sequence_length": 0}, "min_sequence_length"),
])
def test_invalid_parameters_raise_config_error_naming_the_parameter(cls, overrides, name):
    with pytest.raises(ConfigError, match=name):
        make(cls, **overrides)


def test_defaults_follow_the_spec():
    assert (RepeatSerialRecall.Params().min_recall_number, RepeatSerialRecall.Params().max_recall_number) == (1, 5)
    assert (SkipRecall.Params().seq_start, SkipRecall.Params().skip_step) == (0, 2)
    assert ManipulationTemporalRotation.Params().num_items == 0.5
    assert ManipulationSpatialRotation.Params().num_bits_shifted == 0.5
    for cls in TASKS:
        params = cls.Params()
        assert (params.control_bits, params.data_bits, params.bias) == (2, 8, 0.5)


@pytest.mark.parametrize("cls", TASKS)
def test_registered_under_the_class_name_with_a_docstring_example(cls):
    assert get_problem(cls.__name__) is cls
    doc = cls.__dict__.get("__doc__") or ""  # its own, not inherited
    assert "::" in doc and "target" in doc  # `mip list problems NAME` shows a tiny example


@pytest.mark.parametrize("cls", TASKS)
def test_plot_steps_through_every_time_step(cls):
    problem = make(cls, control_bits=3, num_subseq_min=2, num_subseq_max=2) if cls is ScratchPad \
        else make(cls, control_bits=3)
    problem.seed(2)
    batch = problem.generate_batch(2)
    steps = batch["sequences"].shape[1]
    frames = problem.plot(batch, 1, torch.randn(batch["targets"].shape))
    assert isinstance(frames, Frames) and len(frames) == steps
    frames.update(0)
    title = frames.figure.texts[0].get_text()
    assert title.startswith(f"{cls.__name__}, sample 1 (")
    assert ("N = 2, longest L = " in title) == (cls is ScratchPad)

"""Tests of the dual tasks against the original's last working generators (Jayram et al. 2018, arXiv:1809.11087)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from miprometheus import catalogue
from miprometheus.data import check_values
from miprometheus.errors import ConfigError
from miprometheus.problems.seq_to_seq.algorithmic.algorithmic_problem import AlgorithmicSeqToSeqProblem
from miprometheus.problems.seq_to_seq.algorithmic.dual.distraction_carry import DistractionCarry
from miprometheus.problems.seq_to_seq.algorithmic.dual.distraction_forget import DistractionForget
from miprometheus.problems.seq_to_seq.algorithmic.dual.distraction_ignore import DistractionIgnore
from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import dual_rotation_steps, rotate_left
from miprometheus.problems.seq_to_seq.algorithmic.dual.interruption_not import InterruptionNot
from miprometheus.problems.seq_to_seq.algorithmic.dual.interruption_reverse_recall import InterruptionReverseRecall
from miprometheus.problems.seq_to_seq.algorithmic.dual.interruption_swap_recall import InterruptionSwapRecall
from miprometheus.problems.seq_to_seq.algorithmic.dual.operation_span import OperationSpan
from miprometheus.problems.seq_to_seq.algorithmic.dual.reading_span import ReadingSpan
from miprometheus.registry import get_problem
from tests.algorithmic_examples import parse_example

PAIRED = [DistractionCarry, DistractionForget, DistractionIgnore, InterruptionNot, InterruptionReverseRecall,
          InterruptionSwapRecall]
ALL = [*PAIRED, OperationSpan, ReadingSpan]

# The items of the worked examples (§0): x_1 = [a, b], y_1 = [s], x_2 = [c], y_2 = [p, q, r] (OperationSpan: [p]);
# ReadingSpan: x_1 = [u, v], x_2 = [a, b, c].
a, b, c = [1, 0, 1], [0, 1, 1], [1, 1, 0]
u, v, p, q, r, s = [1, 1, 1], [0, 0, 1], [0, 0, 1], [1, 0, 0], [1, 1, 1], [0, 1, 0]


def items(*vectors: list[int]) -> torch.Tensor:
    """One sample's subsequence [1, k, D]."""
    return torch.tensor([list(vectors)], dtype=torch.float32)


PAIRED_VALUES = {"memory": [items(a, b), items(c)], "secondary": [items(s), items(p, q, r)]}
OPERATION_SPAN_VALUES = {"memory": [items(a, b), items(c)], "secondary": [items(s), items(p)]}
READING_SPAN_VALUES = {"memory": [items(u, v), items(a, b, c)]}

# Worked examples of the original generators, verbatim: t | control bits | data bits || target bits | mask | role.
DISTRACTION_CARRY_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | y_1[0] = s
 5 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 6 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 7 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
 8 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | y_2[0] = p
 9 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | y_2[1] = q
10 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | y_2[2] = r
11 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond: last y)
12 |  0  0  0  0 |  0  0  0 ||  0  0  1 | 1 | -> p
13 |  0  0  0  0 |  0  0  0 ||  1  0  0 | 1 | -> q
14 |  0  0  0  0 |  0  0  0 ||  1  1  1 | 1 | -> r
15 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
16 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
17 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
18 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

DISTRACTION_FORGET_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | y_1[0] = s
 5 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_1)
 6 |  0  0  0  0 |  0  0  0 ||  0  1  0 | 1 | -> s
 7 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 8 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 9 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
10 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | y_2[0] = p
11 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | y_2[1] = q
12 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | y_2[2] = r
13 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_2)
14 |  0  0  0  0 |  0  0  0 ||  0  0  1 | 1 | -> p
15 |  0  0  0  0 |  0  0  0 ||  1  0  0 | 1 | -> q
16 |  0  0  0  0 |  0  0  0 ||  1  1  1 | 1 | -> r
17 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
18 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
19 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
20 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

DISTRACTION_IGNORE_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | y_1[0] = s
 5 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 6 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 7 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
 8 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | y_2[0] = p
 9 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | y_2[1] = q
10 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | y_2[2] = r
11 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
12 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
13 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
14 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

READING_SPAN_EXAMPLE = """
 0 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker (x_1 starts)
 1 |  0  0 |  1  1  1 ||  0  0  0 | 0 | x_1[0] = u
 2 |  0  0 |  0  0  1 ||  0  0  0 | 0 | x_1[1] = v
 3 |  1  0 |  0  0  0 ||  0  0  0 | 0 | store marker (x_2 starts)
 4 |  0  0 |  1  0  1 ||  0  0  0 | 0 | x_2[0] = a
 5 |  0  0 |  0  1  1 ||  0  0  0 | 0 | x_2[1] = b
 6 |  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[2] = c
 7 |  0  1 |  0  0  0 ||  0  0  0 | 0 | recall marker
 8 |  0  0 |  0  0  0 ||  0  0  1 | 1 | -> last item of x_1 = v
 9 |  0  0 |  0  0  0 ||  1  1  0 | 1 | -> last item of x_2 = c
"""

INTERRUPTION_NOT_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | y_1[0] = s
 5 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_1)
 6 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> NOT s
 7 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 8 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 9 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
10 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | y_2[0] = p
11 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | y_2[1] = q
12 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | y_2[2] = r
13 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_2)
14 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> NOT p
15 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> NOT q
16 |  0  0  0  0 |  0  0  0 ||  0  0  0 | 1 | -> NOT r
17 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
18 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
19 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
20 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

INTERRUPTION_REVERSE_RECALL_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | shown: s
 5 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_1)
 6 |  0  0  0  0 |  0  0  0 ||  0  1  0 | 1 | -> s
 7 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 8 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 9 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
10 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | shown: r (= y_2[2])
11 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | shown: q (= y_2[1])
12 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | shown: p (= y_2[0])
13 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_2)
14 |  0  0  0  0 |  0  0  0 ||  0  0  1 | 1 | -> p
15 |  0  0  0  0 |  0  0  0 ||  1  0  0 | 1 | -> q
16 |  0  0  0  0 |  0  0  0 ||  1  1  1 | 1 | -> r
17 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
18 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
19 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
20 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

INTERRUPTION_SWAP_RECALL_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | shown: s (k = 0)
 5 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_1)
 6 |  0  0  0  0 |  0  0  0 ||  0  1  0 | 1 | -> s
 7 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 8 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 9 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
10 |  0  0  0  0 |  1  1  1 ||  0  0  0 | 0 | shown: r (= y_2[2])
11 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | shown: p (= y_2[0])
12 |  0  0  0  0 |  1  0  0 ||  0  0  0 | 0 | shown: q (= y_2[1])
13 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_2)
14 |  0  0  0  0 |  0  0  0 ||  0  0  1 | 1 | -> p
15 |  0  0  0  0 |  0  0  0 ||  1  0  0 | 1 | -> q
16 |  0  0  0  0 |  0  0  0 ||  1  1  1 | 1 | -> r
17 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
18 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
19 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
20 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

OPERATION_SPAN_EXAMPLE = """
 0 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_1 starts)
 1 |  0  0  0  0 |  1  0  1 ||  0  0  0 | 0 | x_1[0] = a
 2 |  0  0  0  0 |  0  1  1 ||  0  0  0 | 0 | x_1[1] = b
 3 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_1 starts)
 4 |  0  0  0  0 |  0  1  0 ||  0  0  0 | 0 | y_1[0] = s
 5 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_1)
 6 |  0  0  0  0 |  0  0  0 ||  0  0  1 | 1 | -> s bits rotated left by 2
 7 |  1  0  0  0 |  0  0  0 ||  0  0  0 | 0 | # (x_2 starts)
 8 |  0  0  0  0 |  1  1  0 ||  0  0  0 | 0 | x_2[0] = c
 9 |  0  1  0  0 |  0  0  0 ||  0  0  0 | 0 | % (y_2 starts)
10 |  0  0  0  0 |  0  0  1 ||  0  0  0 | 0 | y_2[0] = p
11 |  0  0  1  0 |  0  0  0 ||  0  0  0 | 0 | & (respond to y_2)
12 |  0  0  0  0 |  0  0  0 ||  1  0  0 | 1 | -> p bits rotated left by 2
13 |  0  0  0  1 |  0  0  0 ||  0  0  0 | 0 | $ (recall all x)
14 |  0  0  0  0 |  0  0  0 ||  1  0  1 | 1 | -> a
15 |  0  0  0  0 |  0  0  0 ||  0  1  1 | 1 | -> b
16 |  0  0  0  0 |  0  0  0 ||  1  1  0 | 1 | -> c
"""

EXAMPLES = [(DistractionCarry, DISTRACTION_CARRY_EXAMPLE, PAIRED_VALUES),
            (DistractionForget, DISTRACTION_FORGET_EXAMPLE, PAIRED_VALUES),
            (DistractionIgnore, DISTRACTION_IGNORE_EXAMPLE, PAIRED_VALUES),
            (InterruptionNot, INTERRUPTION_NOT_EXAMPLE, PAIRED_VALUES),
            (InterruptionReverseRecall, INTERRUPTION_REVERSE_RECALL_EXAMPLE, PAIRED_VALUES),
            (InterruptionSwapRecall, INTERRUPTION_SWAP_RECALL_EXAMPLE, PAIRED_VALUES),
            (OperationSpan, OPERATION_SPAN_EXAMPLE, OPERATION_SPAN_VALUES),
            (ReadingSpan, READING_SPAN_EXAMPLE, READING_SPAN_VALUES)]


def make(cls: type, **overrides) -> AlgorithmicSeqToSeqProblem:
    values = {"batch_size": 4, "data_bits": 3, "min_sequence_length": 1, "max_sequence_length": 6, "size": 40}
    values.update(overrides)
    return cls(cls.Params(**values))


# --- worked examples, bit-exact ------------------------------------------------------------------
@pytest.mark.parametrize("cls, table, values", EXAMPLES, ids=[e[0].__name__ for e in EXAMPLES])
def test_worked_example_is_reproduced_bit_exactly(cls, table, values):
    problem = make(cls)  # num_rotation keeps its default 0.5, as in the examples
    batch = problem.build_batch(**values)
    sequences, targets, masks = parse_example(table)
    assert torch.equal(batch["sequences"], sequences)
    assert torch.equal(batch["targets"], targets)
    assert torch.equal(batch["masks"], masks)
    # sequences_length = max n_i; num_subsequences = 2N (ReadingSpan: N)
    assert batch["sequences_length"].tolist() == ([[3]] if cls is ReadingSpan else [[2]])
    assert batch["num_subsequences"].tolist() == ([[2]] if cls is ReadingSpan else [[4]])
    check_values(problem.name, batch, problem.output_definitions)


# --- structure of random batches (§4.0.1, §6) -----------------------------------------------------
def expected_steps_and_scored(cls: type, n: list[int], m: list[int]) -> tuple[int, int]:
    """T and the number of scored steps per sample, from the formulas of §4.0.1 and §6."""
    stored = sum(k + 1 for k in n)
    if cls is DistractionCarry:
        return stored + sum(k + 1 for k in m) + (m[-1] + 1) + 1 + sum(n), m[-1] + sum(n)
    if cls is DistractionIgnore:
        return stored + sum(k + 1 for k in m) + 1 + sum(n), sum(n)
    if cls is OperationSpan:
        return stored + 4 * len(n) + 1 + sum(n), len(n) + sum(n)
    if cls is ReadingSpan:
        return stored + 1 + len(n), len(n)
    return stored + 2 * sum(k + 1 for k in m) + 1 + sum(n), sum(m) + sum(n)


@pytest.mark.parametrize("cls", ALL)
def test_random_batches_follow_the_layout(cls):
    markers = 2 if cls is ReadingSpan else 4
    problem = make(cls, batch_size=5, control_bits=markers + 1, data_bits=6, min_sequence_length=2,
                   max_sequence_length=5, num_subseq_min=1, num_subseq_max=4)
    problem.seed(7)
    counts = set()
    for _ in range(20):
        values = problem.draw_values(5)
        batch = problem.build_batch(**values)
        check_values(problem.name, batch, problem.output_definitions)
        memory, secondary = values["memory"], values.get("secondary", [])
        n = [x.shape[1] for x in memory]
        m = [y.shape[1] for y in secondary]
        counts.add(len(n))
        assert 1 <= len(n) <= 4 and all(2 <= k <= 5 for k in n + ([] if cls is OperationSpan else m))
        assert len(m) == (0 if cls is ReadingSpan else len(n))
        if cls is OperationSpan:
            assert m == [1] * len(n)
        assert all(x.shape[0] == 5 and x.shape[2] == 6 for x in memory + secondary)
        steps, scored = expected_steps_and_scored(cls, n, m)
        seq, tgt, mask = batch["sequences"], batch["targets"], batch["masks"]
        assert seq.shape == (5, steps, markers + 7) and tgt.shape == (5, steps, 6) and mask.shape == (5, steps, 1)
        assert (mask.sum(dim=(1, 2)) == scored).all()
        assert (tgt[mask.expand_as(tgt) == 0] == 0).all()
        assert batch["sequences_length"].tolist() == [[max(n)]] * 5
        assert batch["num_subsequences"].tolist() == [[len(n) if cls is ReadingSpan else 2 * len(n)]] * 5
        control, data = seq[..., :markers + 1], seq[..., markers + 1:]
        assert (control[..., markers:] == 0).all()  # a control bit beyond the markers stays 0
        is_marker = control.sum(-1) > 0
        assert (control.sum(-1) <= 1).all() and (data[is_marker] == 0).all()  # markers: one bit, no data
        response = mask[..., 0] == 1
        assert (seq[response] == 0).all()  # response steps: all-zero inputs (no control lines)
        assert not (is_marker & response).any()
        assert is_marker.sum(-1).tolist() == [steps - scored - sum(n) - sum(m)] * 5  # the rest are shown items
        # the final recall: the steps after the last marker hold x_1 .. x_N (ReadingSpan: the last items)
        last = int(is_marker[0].nonzero().max())
        final = torch.cat([x[:, -1:] for x in memory], 1) if cls is ReadingSpan else torch.cat(memory, 1)
        assert torch.equal(tgt[:, last + 1:], final) and (mask[:, last + 1:] == 1).all()
    assert counts == {1, 2, 3, 4}


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_gives_same_batches_and_bits_differ_between_samples(cls):
    first, second, other = make(cls), make(cls), make(cls)
    first.seed(5)
    second.seed(5)
    other.seed(6)
    state = torch.get_rng_state()
    batches = [first.generate_batch(8) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state)  # only the problem's generator is used
    for batch in batches:
        again = second.generate_batch(8)
        for key in batch:
            assert torch.equal(batch[key], again[key]), key
        assert not torch.equal(batch["sequences"][0], batch["sequences"][1])  # bits are drawn per sample
    assert any(not torch.equal(x["sequences"], other.generate_batch(8)["sequences"]) for x in batches)


def test_generate_batch_is_build_batch_of_draw_values():
    drawn, generated = make(InterruptionSwapRecall), make(InterruptionSwapRecall)
    drawn.seed(3)
    generated.seed(3)
    batch = drawn.build_batch(**drawn.draw_values(4))
    assert torch.equal(batch["sequences"], generated.generate_batch(4)["sequences"])


def test_dataloader_yields_generated_batches():
    problem = make(DistractionForget)
    loader = DataLoader(problem, batch_size=4, collate_fn=problem.collate_fn)
    batches = list(loader)
    assert len(batches) == 10 and all(x["sequences"].shape[0] == 4 for x in batches)


# --- task definitions on random draws -----------------------------------------------------------
def responses_to_secondary(batch) -> torch.Tensor:
    """The targets of the scored steps before the final recall, in order: [B, k, D]."""
    control = batch["sequences"][0, :, :4]
    last = int((control.sum(-1) > 0).nonzero().max())
    scored = batch["masks"][0, :last, 0] == 1
    return batch["targets"][:, :last][:, scored]


def test_secondary_responses_follow_each_task_on_random_draws():
    for cls, expected in [(DistractionForget, lambda y: y), (InterruptionNot, lambda y: 1 - y),
                          (InterruptionReverseRecall, lambda y: y), (DistractionCarry, lambda y: y)]:
        problem = make(cls, batch_size=3, max_sequence_length=4, num_subseq_max=3)
        problem.seed(1)
        values = problem.draw_values(3)
        batch = problem.build_batch(**values)
        answered = values["secondary"][-1:] if cls is DistractionCarry else values["secondary"]
        assert torch.equal(responses_to_secondary(batch), torch.cat([expected(y) for y in answered], 1)), cls


def test_reverse_recall_shows_the_secondary_subsequences_reversed():
    problem = make(InterruptionReverseRecall)
    y = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(0)).round()
    batch = problem.build_batch([torch.zeros(2, 1, 3)], [y])
    assert torch.equal(batch["sequences"][:, 3:7, 4:], y.flip(1))  # after # x_1 %
    assert torch.equal(batch["targets"][:, 8:12], y)  # after &


@pytest.mark.parametrize("amount, size, steps", [(0.5, 3, 2), (0.5, 8, 4), (0.5, 5, 2), (1.0, 3, 0), (-1.0, 3, 0),
                                                 (-0.5, 3, 1), (0.0, 4, 0), (2.0, 3, 2), (4.0, 3, 1),
                                                 (-2.0, 5, 3), (1.5, 4, 2)])
def test_dual_rotation_steps_rounds_half_to_even_with_inclusive_relative_range(amount, size, steps):
    assert dual_rotation_steps(amount, size) == steps


def test_rotate_left():
    x = torch.arange(5.0).view(1, 5, 1)
    assert rotate_left(x, 2.0, dim=1).flatten().tolist() == [2, 3, 4, 0, 1]
    assert rotate_left(x, 1.0, dim=1).flatten().tolist() == [0, 1, 2, 3, 4]  # ±1 is a whole turn
    assert rotate_left(x, 0.4, dim=1).flatten().tolist() == [2, 3, 4, 0, 1]  # round(0.4 · 5) = 2


@pytest.mark.parametrize("rotation, shown_order", [(0.5, [2, 0, 1]), (1.0, [0, 1, 2]), (-1.0 / 3, [2, 0, 1]),
                                                   (2.0, [2, 0, 1]), (4.0, [1, 2, 0])])
def test_swap_recall_shows_each_secondary_subsequence_rotated_left(rotation, shown_order):
    problem = make(InterruptionSwapRecall, num_rotation=rotation)
    y = torch.eye(3).unsqueeze(0)  # y[t] = one-hot t, so what is shown tells the rotation
    batch = problem.build_batch([torch.zeros(1, 1, 3)], [y])
    assert batch["sequences"][0, 3:6, 4:].argmax(-1).tolist() == shown_order  # after # x_1 %
    assert torch.equal(batch["targets"][:, 7:10], y)  # after &


def test_operation_span_rotates_the_bits_left_with_eight_bits():
    problem = make(OperationSpan, data_bits=8)  # num_rotation 0.5: k = 4, the nibbles swap
    y = torch.tensor([[[1, 1, 0, 0, 0, 0, 0, 1]]], dtype=torch.float32)
    batch = problem.build_batch([torch.zeros(1, 1, 8)], [y])
    assert batch["targets"][0, 5].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    third = make(OperationSpan, data_bits=8, num_rotation=3.0)  # absolute: 3 bits
    assert third.build_batch([torch.zeros(1, 1, 8)], [y])["targets"][0, 5].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]


# --- curriculum on both lengths ------------------------------------------------------------------
def lengths_drawn(problem, batches: int = 60) -> tuple[set[int], set[int]]:
    memory, secondary = set(), set()
    for _ in range(batches):
        values = problem.draw_values(2)
        memory |= {x.shape[1] for x in values["memory"]}
        secondary |= {y.shape[1] for y in values["secondary"]}
    return memory, secondary


@pytest.mark.parametrize("cls", PAIRED)
def test_curriculum_grows_both_the_memory_and_the_secondary_lengths(cls):
    problem = make(cls, min_sequence_length=1, max_sequence_length=4)
    problem.seed(2)
    problem.curriculum_start(AlgorithmicSeqToSeqProblem.CurriculumParams(initial_max_sequence_length=2))
    assert problem.curriculum_update(0, 10) is False
    assert lengths_drawn(problem) == ({1, 2}, {1, 2})
    assert problem.curriculum_update(9, 10) is False  # one epoch done: both bounds 3
    assert (problem.max_sequence_length, problem.max_secondary_length) == (3, 3)
    assert lengths_drawn(problem) == ({1, 2, 3}, {1, 2, 3})
    batch = problem.generate_batch(2)
    stats = problem.statistics(batch, torch.zeros_like(batch["targets"]))
    assert stats["max_seq_length"] == 3 and stats["max_secondary_length"] == 3
    assert problem.curriculum_update(19, 10) is True  # two epochs: both at their maximum 4
    assert lengths_drawn(problem) == ({1, 2, 3, 4}, {1, 2, 3, 4})


def test_curriculum_with_a_separate_secondary_range_is_done_when_both_bounds_are():
    problem = make(DistractionForget, max_sequence_length=3, min_secondary_length=2, max_secondary_length=6)
    problem.curriculum_start(AlgorithmicSeqToSeqProblem.CurriculumParams(initial_max_sequence_length=1))
    assert problem.curriculum_update(0, 10) is False
    assert (problem.max_sequence_length, problem.max_secondary_length) == (1, 2)  # kept inside 2..6
    assert problem.curriculum_update(19, 10) is False
    assert (problem.max_sequence_length, problem.max_secondary_length) == (3, 4)  # memory done, secondary not
    assert problem.curriculum_update(39, 10) is True
    assert (problem.max_sequence_length, problem.max_secondary_length) == (3, 6)
    memory, secondary = lengths_drawn(problem)
    assert memory == {1, 2, 3} and secondary == {2, 3, 4, 5, 6}


def test_curriculum_state_is_saved_and_restored():
    problem = make(InterruptionNot, max_sequence_length=5, max_secondary_length=3)
    problem.curriculum_start(AlgorithmicSeqToSeqProblem.CurriculumParams(initial_max_sequence_length=1))
    problem.curriculum_update(9, 10)
    restored = make(InterruptionNot, max_sequence_length=5, max_secondary_length=3)
    restored.load_state_dict(problem.state_dict())
    assert (restored.max_sequence_length, restored.max_secondary_length) == (2, 2)
    assert restored.curriculum_update(29, 10) is False  # the curriculum carries on from where it was
    assert (restored.max_sequence_length, restored.max_secondary_length) == (4, 3)
    assert restored.curriculum_update(39, 10) is True


def test_curriculum_of_operation_and_reading_span_grows_the_memory_lengths():
    for cls in (OperationSpan, ReadingSpan):
        problem = make(cls, max_sequence_length=3)
        problem.curriculum_start(AlgorithmicSeqToSeqProblem.CurriculumParams(initial_max_sequence_length=1))
        problem.curriculum_update(0, 5)
        assert {x.shape[1] for _ in range(20) for x in problem.draw_values(2)["memory"]} == {1}
        assert problem.curriculum_update(9, 5) is True


# --- statistics, loss, definitions -----------------------------------------------------------------
def test_stream_accuracies_separate_the_final_recall_from_the_secondary_responses():
    problem = make(InterruptionNot)
    batch = problem.build_batch(**PAIRED_VALUES)
    perfect = batch["targets"] * 8 - 4
    secondary_steps = torch.zeros_like(perfect, dtype=torch.bool)
    secondary_steps[:, :17] = True  # the responses to y_1 and y_2 come before $ (t = 17)
    predictions = torch.where(secondary_steps, -perfect, perfect)  # every secondary bit wrong
    stats = problem.statistics(batch, predictions)
    assert stats["acc_memory"].value == 1.0 and stats["acc_secondary"].value == 0.0
    assert stats["acc"].value == pytest.approx(3 / 7)  # 3 of 7 scored steps are the final recall
    assert stats["num_subsequences"] == 4 and stats["seq_length"] == 2
    assert set(stats) == set(problem.statistic_definitions)


@pytest.mark.parametrize("cls", ALL)
def test_every_statistic_is_declared_and_the_loss_is_finite(cls):
    problem = make(cls)
    problem.seed(0)
    batch = problem.generate_batch(4)
    predictions = torch.randn_like(batch["targets"])
    stats = problem.statistics(batch, predictions)
    assert set(stats) == set(problem.statistic_definitions)
    assert ("acc_memory" in stats) == (cls not in (DistractionIgnore, ReadingSpan))
    assert torch.isfinite(problem.loss(batch, predictions))


def test_definitions_and_default_values():
    forget = make(DistractionForget)
    assert forget.default_values == {"input_item_size": 7, "output_item_size": 3, "store_bit": 0, "recall_bit": 3}
    reading = make(ReadingSpan)
    assert reading.default_values == {"input_item_size": 5, "output_item_size": 3, "store_bit": 0, "recall_bit": 1}
    defaults = DistractionForget.Params()
    assert (defaults.control_bits, defaults.data_bits, defaults.use_control_lines) == (4, 8, False)
    assert (defaults.min_sequence_length, defaults.max_sequence_length) == (1, 6)
    assert (defaults.num_subseq_min, defaults.num_subseq_max) == (1, 3)
    assert InterruptionSwapRecall.Params().num_rotation == 0.5 and OperationSpan.Params().num_rotation == 0.5
    assert ReadingSpan.Params().control_bits == 2


@pytest.mark.parametrize("cls, overrides, name", [
    (DistractionForget, {"control_bits": 3}, "control_bits"),
    (ReadingSpan, {"control_bits": 1}, "control_bits"),
    (DistractionCarry, {"use_control_lines": True}, "use_control_lines"),
    (OperationSpan, {"num_subseq_min": 0}, "num_subseq_min"),
    (InterruptionNot, {"num_subseq_min": 4, "num_subseq_max": 3}, "num_subseq_min"),
    (DistractionIgnore, {"num_subseq_max": 64}, "num_subseq_max"),
    (InterruptionSwapRecall, {"min_secondary_length": 0}, "min_secondary_length"),
    (InterruptionReverseRecall, {"min_secondary_length": 4, "max_secondary_length": 3}, "secondary lengths"),
    (DistractionForget, {"max_sequence_length": 2, "min_secondary_length": 3}, "secondary lengths"),
])
def test_invalid_parameters_raise_config_error_naming_the_parameter(cls, overrides, name):
    with pytest.raises(ConfigError, match=name):
        make(cls, **overrides)


# --- registry, docs, plot -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_registry_and_catalogue_describe_the_tasks(cls):
    assert get_problem(cls.__name__) is cls
    info = catalogue.describe("problems", cls.__name__)
    assert "::" in info.doc and "Statistics" in info.doc  # a tiny example and the statistics
    params = {p.name: p for p in info.params}
    assert {"num_subseq_min", "num_subseq_max", "control_bits"} <= set(params)
    assert params["control_bits"].default == ("2" if cls is ReadingSpan else "4")
    if cls in PAIRED:
        assert {"min_secondary_length", "max_secondary_length"} <= set(params)


def test_plot_shows_every_step_of_the_layout():
    problem = make(InterruptionSwapRecall)
    batch = problem.build_batch(**PAIRED_VALUES)
    frames = problem.plot(batch, 0, torch.randn_like(batch["targets"]))
    assert len(frames) == 21
    titles = [ax.get_title(loc="left") for ax in frames.figure.axes if ax.get_title(loc="left")]
    assert titles[0].startswith("markers (0 #") and "predictions (sigmoid of the logits)" in titles
    frames.update(5)
    reading = make(ReadingSpan)
    assert len(reading.plot(reading.build_batch(**READING_SPAN_VALUES), 0)) == 10

"""DistractionForget: reproduce each distractor right after it is shown, then forget it; recall the memory list."""

from __future__ import annotations

from miprometheus.problems.seq_to_seq.algorithmic.dual.dual_task import PairedSubsequenceTask
from miprometheus.registry import register_problem


@register_problem
class DistractionForget(PairedSubsequenceTask):
    """Memory subsequences interleaved with distractors that are answered at once and can then be forgotten.

    Layout (Jayram et al. 2018; markers ``#`` memory, ``%`` secondary, ``&`` respond,
    ``$`` recall on control bits 0-3): ``[# x_i % y_i & D(m_i)]_i  $ D(n_1 + ... + n_N)``, where ``D(k)``
    is k response steps (all-zero inputs, scored). Targets: ``y_i`` after each ``&``, then
    ``x_1 .. x_N`` after ``$``. ``N ~ U{num_subseq_min..num_subseq_max}``, ``n_i`` and ``m_i`` are drawn
    once per batch; ``T = Σ(n_i+1) + 2·Σ(m_i+1) + 1 + Σ n_i``. Example, ``x_1 = ab``, ``y_1 = s``,
    ``x_2 = c``, ``y_2 = pqr`` (``-`` = response step)::

        inputs   # a b % s & - # c % p q r & - - - $ - - -
        targets  . . . . . . s . . . . . . . p q r . a b c

    Statistics: the algorithmic ones, ``num_subsequences`` (2N), ``acc_memory`` (final recall),
    ``acc_secondary`` (responses to the distractors), ``max_secondary_length``. Curriculum learning
    grows the bounds of both ``n_i`` and ``m_i``.
    """

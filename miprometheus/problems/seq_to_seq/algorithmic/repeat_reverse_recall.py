"""RepeatReverseRecall: store a random binary sequence once, then reproduce it reversed R times."""

from __future__ import annotations

import torch

from miprometheus.problems.seq_to_seq.algorithmic.repeat_serial_recall import RepeatSerialRecall
from miprometheus.registry import register_problem


@register_problem
class RepeatReverseRecall(RepeatSerialRecall):
    """Store a sequence of random bit vectors once, then recall it last item first R times.

    The layout of RepeatSerialRecall (``T = (R+1)(L+1)``, R and L drawn once per batch): the store
    marker, the L items, then R blocks of a recall marker and L recall steps with the optional control
    line. Every block's targets are ``x[L-1], ..., x[0]``; all ``R·L`` recall steps are scored.
    Example, ``L = 2``, ``R = 2`` (``S``/``R`` = store/recall marker, ``-`` = recall step)::

        inputs   S  a  b  R  -  -  R  -  -
        targets  .  .  .  .  b  a  .  b  a

    Statistics: the base ones and ``num_recalls`` (R). Curriculum learning grows only the bound on L.
    """

    def make_targets(self, items: torch.Tensor) -> torch.Tensor:
        return items.flip(1)

"""The shared transforms of the manipulation tasks (as the original MI-Prometheus defines them): time and bit rotations.

Both take an amount that is *relative* (a fraction of the size) when it lies strictly between -1 and 1 and
*absolute* (a number of positions) otherwise, and round it half to even, as numpy and torch do
(``shift_amount(0.5, 3) = 2``, ``shift_amount(0.5, 5) = 2``, ``shift_amount(0.5, 7) = 4``).
"""

from __future__ import annotations

import torch


def shift_amount(amount: float, size: int) -> int:
    """The number of positions ``ρ`` of a circular shift by ``amount`` over ``size`` positions (not reduced mod size).

    ``ρ = round_half_even(amount · size)`` if ``-1 < amount < 1``, else ``round_half_even(amount)``.
    """
    # Python's round() on a float rounds half to even, like numpy's: round(1.5) = round(2.5) = 2.
    # The original negated the amount before this choice; the bounds are symmetric and rounding half to
    # even is odd-symmetric (round(-x) = -round(x)), so the negation changes nothing and is left out.
    return round(amount * size) if -1 < amount < 1 else round(amount)


def rotate_seq(items: torch.Tensor, amount: float, dim: int = 1) -> torch.Tensor:
    """Rotate a sequence circularly in time, to the right: ``out[t] = x[(t - ρ) mod L]`` along ``dim``.

    ``ρ = shift_amount(amount, L)``: ``amount = 1`` gives ``[x[L-1], x[0], ..., x[L-2]]``; a negative amount rotates
    to the left.
    """
    length = items.shape[dim]
    if length == 0:
        return items.clone()
    return torch.roll(items, shift_amount(amount, length) % length, dims=dim)


def bit_shift(items: torch.Tensor, amount: float) -> torch.Tensor:
    """Shift the bits of every item circularly towards higher indices: ``out[j] = x[(j - ρ) mod D]`` (last dim).

    ``ρ = shift_amount(amount, D)``; with ``D = 8`` and ``amount = 0.5`` the two nibbles are swapped.
    """
    return rotate_seq(items, amount, dim=-1)

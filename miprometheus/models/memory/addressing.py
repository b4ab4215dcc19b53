"""The maths shared by the memory-augmented networks: squashing, content and location addressing
(Graves, Wayne, Danihelka 2014, §3.3).

Every function works on whole batches (no Python loop over samples). Shapes: memory ``[B, N, W]`` (addresses x
content), weightings ``[B, N]``, keys ``[B, W]``, shift kernels ``[B, S]`` with ``S`` odd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: added before a power and used as the floor of a normalisation, so sharpening never divides by zero.
EPSILON = 1e-12


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """``1 + softplus(x)``: a strength in [1, inf) (key strengths, sharpening exponents)."""
    return 1.0 + F.softplus(x)


def normalize_l1(weights: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """Divide non-negative ``weights [..., N]`` by their sum, floored at ``eps``."""
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(eps)


def cosine_similarity(memory: torch.Tensor, key: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """Cosine similarity ``[B, N]`` between ``key [B, W]`` and every row of ``memory [B, N, W]``.

    Both sides are L2-normalised with an ``eps`` floor, so an all-zero row (an empty memory) has similarity 0.
    """
    memory_unit = F.normalize(memory, p=2.0, dim=-1, eps=eps)
    key_unit = F.normalize(key, p=2.0, dim=-1, eps=eps)
    return torch.bmm(memory_unit, key_unit.unsqueeze(-1)).squeeze(-1)


def content_weighting(memory: torch.Tensor, key: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Content addressing (NTM eqs. 5-6): ``softmax_i(beta * cos(key, M[i]))``; ``strength`` is ``[B, 1]``."""
    return torch.softmax(strength * cosine_similarity(memory, key), dim=-1)


def shift_offsets(shift_size: int) -> list[int]:
    """The address offset of each kernel entry: entry ``k`` moves the focus by ``(S - 1) / 2 - k``.

    For ``S = 3`` the kernel ``(s0, s1, s2)`` gives ``w~(i) = s0 w(i-1) + s1 w(i) + s2 w(i+1)``: ``s0`` moves the
    focus forward by one address, ``s1`` keeps it, ``s2`` moves it back (the original MI-Prometheus's convention).
    """
    if shift_size < 1 or shift_size % 2 == 0:
        raise ValueError(f"the shift kernel needs an odd size, got {shift_size}")
    half = (shift_size - 1) // 2
    return [half - k for k in range(shift_size)]


def circular_convolution(weights: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Rotate ``weights [B, N]`` by the shift kernel ``[B, S]`` (NTM eq. 8), indices modulo N.

    One ``torch.roll`` per kernel entry (S is a small constant), vectorised over the batch.
    """
    shifted = torch.zeros_like(weights)
    for k, offset in enumerate(shift_offsets(kernel.shape[-1])):
        shifted = shifted + kernel[:, k:k + 1] * torch.roll(weights, shifts=offset, dims=-1)
    return shifted


def sharpen(weights: torch.Tensor, gamma: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """Sharpening (NTM eq. 9) with the numerical guards: ``(w + eps) ** gamma``, normalised; ``gamma`` is ``[B, 1]``.

    Computed as ``softmax(gamma * log(w + eps))``, the same value: the ``eps`` keeps the log finite for a zero
    weight, and the softmax normalises exactly even when every ``(w + eps) ** gamma`` would underflow in floating
    point (with ``w = 0.5``, ``gamma = 50`` the powers are ~1e-15 and an eps-floored division would not normalise).
    """
    return torch.softmax(gamma * torch.log(weights + eps), dim=-1)


def location_addressing(weights: torch.Tensor, kernel: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Shift then sharpen: ``sharpen(circular_convolution(w, s), gamma)``."""
    return sharpen(circular_convolution(weights, kernel), gamma)


def ntm_addressing(memory: torch.Tensor, previous: torch.Tensor, key: torch.Tensor | None,
                   strength: torch.Tensor | None, gate: torch.Tensor | None, kernel: torch.Tensor,
                   gamma: torch.Tensor) -> dict[str, torch.Tensor]:
    """The NTM's whole addressing pipeline (eqs. 5-9): content, interpolation, shift, sharpening.

    Without ``key`` (content addressing off) the head starts from ``previous`` and only shifts and sharpens.
    Returns the final weighting ``"weights"`` and, for plots, ``"content"`` (``w^c``) and ``"gated"`` (``w^g``).
    """
    if key is None:
        content = previous
        gated = previous
    else:
        content = content_weighting(memory, key, strength)
        gated = gate * content + (1.0 - gate) * previous
    return {"weights": location_addressing(gated, kernel, gamma), "content": content, "gated": gated}


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The read vector ``[B, W]``: ``sum_i w(i) M(i)``."""
    return torch.bmm(weights.unsqueeze(1), memory).squeeze(1)


def erase_and_add(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """The NTM write (eqs. 3-4): ``M (1 - w e^T) + w a^T`` for ``weights [B, N]``, ``erase``/``add`` ``[B, W]``."""
    w = weights.unsqueeze(-1)
    return memory * (1.0 - w * erase.unsqueeze(1)) + w * add.unsqueeze(1)


def one_hot_address(batch_size: int, num_addresses: int, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``delta_0``: every sample's weighting on address 0 (the initial head position)."""
    weights = torch.zeros(batch_size, num_addresses, device=device, dtype=dtype)
    weights[:, 0] = 1.0
    return weights

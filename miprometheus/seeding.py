"""Seeds and random states of Python, NumPy and torch: set, capture and restore (for exact resume)."""

from __future__ import annotations

import random
import secrets
from typing import Any

import numpy as np
import torch


def draw_seed() -> int:
    """A fresh seed for ``seed: -1``; it is recorded so the run can be reproduced."""
    return secrets.randbelow(2**31 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *salt: Any) -> int:
    """A seed for one purpose (a split, an epoch's shuffle) derived deterministically from the run seed."""
    value = seed & 0xFFFF_FFFF
    for item in salt:
        for ch in str(item):
            value = (value * 1_000_003 + ord(ch)) % (2**61 - 1)
        value = (value * 1_000_003 + 7) % (2**61 - 1)
    return value % 2**63


def capture_rng_states() -> dict[str, Any]:
    """Every global random state, as tensors and plain values (loadable with weights_only=True)."""
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = states["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

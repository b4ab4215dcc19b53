"""Randomness that defines a dataset's content, seeded from the dataset, never from the run.

A pixel permutation or a set of generated scenes is part of the dataset: two runs with different
seeds must see the same data, so it is drawn from the problem's own ``dataset_seed``-like parameter.
"""

from __future__ import annotations

from typing import Any

import torch

from miprometheus.seeding import derive_seed


def dataset_generator(dataset_seed: int, *names: Any) -> torch.Generator:
    """A generator for randomness that defines a dataset's content (a pixel permutation, generated scenes).

    Seeded from the problem's own ``dataset_seed`` parameter and ``names`` (what it is for, e.g.
    ``"permutation"``), never from the run's seed: two runs with different seeds see the same data,
    and a problem's ``self.generator`` (the per-run sample randomness) is left untouched.
    """
    generator = torch.Generator()
    generator.manual_seed(derive_seed(int(dataset_seed), "dataset", *names))
    return generator


__all__ = ["dataset_generator"]

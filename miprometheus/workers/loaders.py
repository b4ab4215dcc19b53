"""DataLoaders that can start mid-epoch: samplers seeded per epoch, and index lists from the config."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from miprometheus.config.sections import DataLoaderSection, SamplerSection
from miprometheus.errors import ConfigError, DataError
from miprometheus.problems.problem import Problem
from miprometheus.seeding import derive_seed


def parse_indices(spec: list[int] | str, size: int, where: str = "") -> list[int]:
    """Indices from a sampler section: ``[a, b]`` (range), a list, ``"1,5,9"``, ``"a:"`` / ``"a:b"`` (a range;
    without ``b``, to the end of the dataset, whose size a config need not know) or a file holding a list."""
    range_form = re.fullmatch(r"\s*(\d+)\s*:\s*(\d*)\s*", spec) if isinstance(spec, str) else None
    if range_form:
        end = int(range_form.group(2)) if range_form.group(2) else size
        spec = [int(range_form.group(1)), end]
    if isinstance(spec, str):
        text = spec
        path = Path(spec).expanduser()
        if "," not in spec and (path.suffix or path.exists() or "/" in spec):
            if not path.is_file():
                raise DataError(f"{where}sampler index file not found: {path}")
            text = path.read_text()
        try:
            values = [int(v) for v in text.replace("\n", ",").split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"{where}sampler indices must be integers separated by commas: {spec[:80]!r}") from None
        indices = values
    elif len(spec) == 2:
        indices = list(range(spec[0], spec[1]))
    else:
        indices = list(spec)
    if not indices:
        raise ConfigError(f"{where}sampler selects no samples")
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise ConfigError(f"{where}sampler index {bad[0]} is out of range: the dataset has {size} samples")
    return indices


class EpochSampler(Sampler[int]):
    """Indices of one epoch, shuffled by a generator seeded from (seed, epoch): any epoch can be replayed.

    ``start`` skips the first samples of the epoch (a resumed run continues mid-epoch without
    loading the batches it already trained on).
    """

    def __init__(self, indices: list[int] | range, shuffle: bool, seed: int) -> None:
        self.indices = indices
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return max(0, len(self.indices) - self.start)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(self.indices[self.start:])  # a range stays lazy (generators have a million "samples")
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.epoch))
        order = torch.randperm(len(self.indices), generator=generator).tolist()
        return iter([self.indices[i] for i in order[self.start:]])


class ProblemLoader:
    """A problem's DataLoader for one split, positioned at any (epoch, batch)."""

    def __init__(self, problem: Problem, sampler: SamplerSection | None, settings: DataLoaderSection,
                 seed: int, where: str = "", device: torch.device | str = "cpu") -> None:
        self.problem = problem
        size = len(problem)
        if sampler is None or problem.is_generator:
            indices: list[int] | range = range(size)
            shuffle = not problem.is_generator
        else:
            indices = parse_indices(sampler.indices, size, where)
            shuffle = sampler.name == "SubsetRandomSampler"
        self.num_samples = len(indices)
        self.sampler = EpochSampler(indices, shuffle, seed)
        self.settings = settings
        if self.batches_per_epoch < 1:
            # An epoch without batches would never end (and a validation without batches has no loss).
            split = where.split(".")[0] or "the split"
            if settings.drop_last:
                raise ConfigError(f"{split}: {self.num_samples} samples are fewer than one batch of "
                                  f"{problem.batch_size} and {split}.dataloader.drop_last is true, so no batch "
                                  "would ever be made (lower batch_size or set drop_last: false)")
            raise DataError(f"{split}: problem {problem.name} has no samples")
        self.seed = seed
        extra: dict[str, Any] = {}
        if settings.num_workers > 0:
            extra["persistent_workers"] = settings.persistent_workers
            if settings.prefetch_factor is not None:
                extra["prefetch_factor"] = settings.prefetch_factor
            if problem.is_generator:
                extra["worker_init_fn"] = self._reseed_worker
        self.loader = DataLoader(
            problem, batch_size=problem.batch_size, sampler=self.sampler, collate_fn=problem.collate_fn,
            num_workers=settings.num_workers, pin_memory=self.pin_memory(settings, device),
            drop_last=settings.drop_last, timeout=settings.timeout,
            # A private generator: creating an iterator must not consume the global RNG, or a run
            # resumed mid-epoch would draw differently from an uninterrupted one.
            generator=torch.Generator().manual_seed(seed), **extra)

    @staticmethod
    def pin_memory(settings: DataLoaderSection, device: torch.device | str) -> bool:
        """Pinned (page-locked) batches when the run uses a CUDA device, unless the config says otherwise:
        only from pinned memory is a ``non_blocking`` copy to the GPU asynchronous."""
        if settings.pin_memory is not None:
            return settings.pin_memory
        return torch.device(device).type == "cuda"

    def _reseed_worker(self, worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        info.dataset.seed(derive_seed(self.seed, "worker", worker_id, self.sampler.epoch))

    @property
    def batches_per_epoch(self) -> int:
        n, b = self.num_samples, self.problem.batch_size
        return n // b if self.settings.drop_last else math.ceil(n / b)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Any]:
        self.sampler.set_epoch(epoch, start_batch * self.problem.batch_size)
        return iter(self.loader)

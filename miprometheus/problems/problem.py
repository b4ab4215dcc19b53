"""The Problem base class: a dataset or a data generator, with its loss and statistics."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, default_collate

from miprometheus.data import DataDefinition
from miprometheus.params import MAX_BATCH_SIZE, check_bounds, param
from miprometheus.statistics import Measure, StatisticDefinition

Batch = dict[str, Any]


@dataclasses.dataclass
class ProblemParams:
    """Parameters shared by every problem."""

    batch_size: int = param(64, "number of samples in one batch", min=1, max=MAX_BATCH_SIZE)


class Problem(Dataset):
    """A dataset or data generator for one split, owning its loss, statistics and data definitions.

    Subclasses declare ``Params`` (a dataclass derived from :class:`ProblemParams`), set
    ``output_definitions`` (what each batch holds) and ``prediction_definitions`` (what the
    model must output under the key ``predictions``), publish ``default_values`` for models, and
    implement ``__len__``/``__getitem__`` (finite datasets) or ``generate_batch`` (generators,
    see :class:`GeneratedProblem`), ``loss`` and ``statistics``.

    Random draws of a problem use ``self.generator`` (a ``torch.Generator``), never the global
    RNG, so that its state can be saved in a checkpoint and a run resumed exactly.
    """

    Params: ClassVar[type] = ProblemParams
    #: dataclass of the ``training.curriculum_learning`` section, or None if not supported.
    CurriculumParams: ClassVar[type | None] = None
    #: True when batches are generated on the fly (episode-based training).
    is_generator: ClassVar[bool] = False
    #: True when the problem's definitions depend on assets built from the training split (a vocabulary):
    #: every split then needs them (see :meth:`build_assets`).
    uses_assets: ClassVar[bool] = False

    def __init__(self, params: ProblemParams) -> None:
        check_bounds(params, f"problem {self.name}")  # the bounds its Params declare (param(min=, max=))
        self.params = params
        self.batch_size = params.batch_size
        self.generator = torch.Generator()
        self.output_definitions: dict[str, DataDefinition] = {}
        self.prediction_definitions: dict[str, DataDefinition] = {}
        self.default_values: dict[str, Any] = {}
        #: every statistic :meth:`statistics` may return, and how it combines over a split (declared once:
        #: it fixes the columns of the statistics files).
        self.statistic_definitions: dict[str, StatisticDefinition] = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- data -----------------------------------------------------------------------------
    def collate_fn(self, samples: list[Any]) -> Batch:
        """Make a batch from samples (PyTorch's default collation unless overridden)."""
        return default_collate(samples)

    def batches_per_epoch(self, num_samples: int | None = None) -> int:
        n = len(self) if num_samples is None else num_samples
        return max(1, math.ceil(n / self.batch_size))

    # --- loss and statistics ----------------------------------------------------------------
    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """The scalar loss of a batch (a differentiable tensor)."""
        raise NotImplementedError

    def loss_count(self, batch: Batch, predictions: torch.Tensor) -> float:
        """How many items :meth:`loss` is a mean over (the weight of this batch's loss in a split's mean).

        The number of samples unless overridden (a loss averaged over scored bits counts the bits).
        """
        return float(predictions.shape[0])

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, float | Measure]:
        """Per-batch statistics beyond ``loss``, each declared in :attr:`statistic_definitions`.

        A mean is a :class:`~miprometheus.statistics.Measure` (total, count) or a float (a mean over
        the batch's samples); a statistic may be left out of a batch that has nothing to say about it.
        Values may be 0-d tensors (``statistics.mean_of`` keeps them): the Trainer reads a block of episodes
        back at once, so a statistic computed without ``float()``/``.item()`` costs no wait for the device.
        """
        return {}

    def describe_samples(self, batch: Batch, predictions: torch.Tensor) -> list[str]:
        """One human-readable text per sample of ``batch``: what the model output beside what was expected (a
        translation and its reference). A test writes the first ones into its folder (``samples.txt``);
        [] (the default): the problem has nothing to write."""
        return []

    # --- assets built from the training split (optional) -------------------------------------------
    def build_assets(self) -> dict[str, Any] | None:
        """The assets (vocabularies, answer sets) of this TRAINING problem, as JSON values; None: it has none.

        Built from its own data, or read from a file its config names (e.g. ``vocabulary_file``, for a
        transfer run). The framework then calls :meth:`use_assets` with them on every split, saves them in
        the experiment folder (``assets.json``), and gives them back to the testing problem of ``mip test``.
        """
        return None

    def use_assets(self, assets: dict[str, Any]) -> None:
        """Adopt the training split's assets; called on every split before its definitions and
        ``default_values`` are read (set those that depend on the assets here)."""

    # --- visualisation (optional) ---------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Figures of sample ``index`` of ``batch`` (and of the model's ``predictions`` when given).

        Returns a ``matplotlib.figure.Figure``, frames over time (``miprometheus.plotting.Frames``,
        or a list of Figures of one size) or None (nothing to show, the default). Built with
        matplotlib's object-oriented API, never ``pyplot``.
        """
        return None

    # --- randomness and resume ----------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Reset this problem's own random generator."""
        self.generator.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue generating exactly where a run stopped."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    # --- curriculum learning (optional) ---------------------------------------------------------
    @classmethod
    def check_curriculum(cls, params: Any, curriculum: Any) -> str | None:
        """Why these curriculum settings cannot work with these parameters (None: they can); checked when the
        config is validated, before anything runs."""
        return None

    def curriculum_start(self, curriculum: Any) -> None:
        """Start curriculum learning with the validated ``CurriculumParams`` instance."""
        raise NotImplementedError(f"{self.name} does not support curriculum learning")

    def curriculum_update(self, episode: int, episodes_per_epoch: int) -> bool:
        """Update the curriculum after ``episode`` episodes; return True once it is finished."""
        raise NotImplementedError(f"{self.name} does not support curriculum learning")

    @property
    def curriculum_finished(self) -> bool:
        """Whether the problem is at its full difficulty (always, for a problem without a curriculum, or
        whose curriculum never started): ``loss_stop`` with ``must_finish`` waits for it."""
        return True


class GeneratedProblem(Problem):
    """A problem whose batches are generated on the fly, one whole batch at a time.

    ``len(problem)`` is the nominal number of samples of an "epoch" (the ``size`` parameter);
    ``__getitem__`` returns its index unchanged and ``collate_fn`` ignores the indices and calls
    :meth:`generate_batch` with their count, so PyTorch's DataLoader and samplers work unchanged.
    """

    is_generator = True
    #: samples of a validation or testing split whose config does not set ``size``
    evaluation_size: ClassVar[int] = 1000

    def __len__(self) -> int:
        return int(self.params.size)

    def __getitem__(self, index: int) -> int:
        return index

    def collate_fn(self, samples: list[Any]) -> Batch:
        return self.generate_batch(len(samples))

    def generate_batch(self, batch_size: int) -> Batch:
        raise NotImplementedError

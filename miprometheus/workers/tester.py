"""The Tester: a trained model on the ``testing`` section, one folder of statistics per test run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from miprometheus.checkpoint import load_checkpoint
from miprometheus.config.experiment_spec import ExperimentSpec
from miprometheus.errors import CheckpointError
from miprometheus.files import atomic_write_text, create_unique_dir, timestamp
from miprometheus.layout import TEST_DIR_PREFIX, TEST_SAMPLES, TESTING_AGG_CSV, TESTING_CSV
from miprometheus.seeding import derive_seed
from miprometheus.statistics import write_csv
from miprometheus.workers.evaluation import evaluate
from miprometheus.workers.precision import autocast
from miprometheus.workers.setup import set_up_split


def load_weights(model: Any, checkpoint: Path, device: torch.device) -> dict[str, Any]:
    payload = load_checkpoint(checkpoint, map_location=device)
    if payload.get("model_name") not in (None, model.name):
        raise CheckpointError(f"{checkpoint} holds weights of model {payload['model_name']}, not {model.name}")
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{checkpoint} does not fit model {model.name}: {first}") from None
    return payload


#: samples a test describes in its folder (``samples.txt``), the first of the split
SAMPLES_KEPT = 20


class Tester:
    """Runs a model over the test set; writes per-batch and aggregated statistics."""

    def __init__(self, spec: ExperimentSpec, seed: int, device: str = "cpu",
                 assets: dict[str, Any] | None = None, assets_source: str = "", setting: str | None = None) -> None:
        """``assets``: those its training run saved (``assets.json``); never built from the testing split.

        ``setting``: a named test setting of ``testing.settings`` (None: the testing section itself).
        """
        split = spec.test_settings[setting] if setting is not None else spec.splits["testing"]
        self.spec, self.section, self.setting = spec, split.section, setting
        self.device = torch.device(device)
        self.seed = split.section.seed if split.section.seed is not None else seed
        # Each setting draws its own data: the same for every model tested on it, independent of the others.
        self.data_key = "testing" if setting is None else f"testing.{setting}"
        prepared = set_up_split(spec, split, self.device, global_seed=self.seed,
                                data_seed=derive_seed(self.seed, self.data_key),
                                sampler_seed=derive_seed(self.seed, "testing-sampler"),
                                assets=assets, assets_source=assets_source)
        self.problem, self.model, self.loader = prepared.problem, prepared.model, prepared.loader
        self.precision = prepared.precision  # the precision the model was trained in

    def run(self, logger: Any = None) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Test on the whole testing split (or ``num_batches``): per-batch rows and the exact aggregate.

        The first :data:`SAMPLES_KEPT` samples the problem describes are kept in ``self.samples``.
        """
        self.samples: list[str] = []

        def keep(batch: dict[str, Any], predictions: torch.Tensor) -> None:
            if len(self.samples) < SAMPLES_KEPT:
                self.samples += self.problem.describe_samples(batch, predictions)[:SAMPLES_KEPT - len(self.samples)]

        return evaluate(self.problem, self.model, self.loader.epoch(0), self.device, self.section.num_batches,
                        self.loader.batches_per_epoch, "testing", logger, check_first=True,
                        autocast=lambda: autocast(self.device, self.precision), on_batch=keep)

    def visualize(self, folder: Path, setting: int | str) -> list[Path]:
        """``--visualize``: the figures of the first N tested samples in ``folder`` (or the window); the paths."""
        from miprometheus.visualization import sample_count, visualize_samples

        self.problem.seed(derive_seed(self.seed, self.data_key))  # the same samples as the run's first batches
        return visualize_samples(self.problem, self.model, self.loader.epoch(0), sample_count(setting), self.device,
                                 None if setting == "window" else folder,
                                 title=f"{self.model.name} on {self.problem.name}, test")


def make_test_folder(experiment_folder: Path) -> Path:
    return create_unique_dir(experiment_folder, f"{TEST_DIR_PREFIX}{timestamp()}")


def write_test_results(folder: Path, rows: list[dict[str, float]], agg: dict[str, float],
                       samples: list[str] | None = None) -> None:
    write_csv(folder / TESTING_CSV, rows)
    write_csv(folder / TESTING_AGG_CSV, [agg])
    if samples:
        atomic_write_text(folder / TEST_SAMPLES, "\n\n".join(samples) + "\n")


__all__ = ["Tester", "load_weights", "make_test_folder", "write_test_results"]

"""The sections of an experiment configuration, as typed dataclasses (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from miprometheus.params import MAX_SEED, param

#: most DataLoader worker processes of one split (each holds a copy of the dataset's Python state)
MAX_LOADER_WORKERS = 256


@dataclass
class TerminalConditions:
    """When training stops (whichever comes first)."""

    episode_limit: int | None = param(None, "stop after this many episodes (batches); null: no limit", min=1)
    epoch_limit: int | None = param(None, "stop after this many epochs; null: no limit", min=1)
    loss_stop: float | None = param(None, "stop when the training loss (or the validation loss, when validating) "
                                          "falls below this value")


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for a number of validations."""

    patience: int | None = param(None, "validations without improvement before stopping; null or 0: off", min=0)
    min_delta: float = param(0.0, "an improvement must lower the best validation loss by more than this")


@dataclass
class DataLoaderSection:
    """Arguments of torch.utils.data.DataLoader."""

    num_workers: int = param(0, "worker processes loading batches (0: the main process)", min=0,
                             max=MAX_LOADER_WORKERS)
    pin_memory: bool | None = param(None, "pin host memory for faster (non-blocking) copies to a GPU; "
                                          "null: pin when the run uses a CUDA device")
    persistent_workers: bool = param(False, "keep worker processes alive between epochs")
    prefetch_factor: int | None = param(None, "batches prefetched per worker (num_workers > 0); null: "
                                              "PyTorch's default", min=1, max=1024)
    drop_last: bool = param(False, "drop the last incomplete batch of an epoch")
    timeout: float = param(0.0, "seconds to wait for a batch from a worker (0: forever)", min=0)


@dataclass(kw_only=True)
class SamplerSection:
    """Which samples of the dataset a split uses, and in what order."""

    name: Literal["SubsetRandomSampler", "SubsetSequentialSampler"] = param(
        "SubsetRandomSampler", "SubsetRandomSampler (shuffled every epoch) or SubsetSequentialSampler")
    indices: list[int] | str = param(doc="[start, end] (a range), a list of indices, '1,5,9', 'start:' (to the "
                                         "end) or 'start:end', or a file holding a list", path=True)


@dataclass
class Curriculum:
    """Trainer-level settings of curriculum learning; the problem declares the rest."""

    must_finish: bool = param(True, "loss_stop only counts once the curriculum is done")


@dataclass
class InitFrom:
    """Where a model's initial weights come from (``model.init_from``): transfer from another run."""

    path: str = param(doc="a checkpoint file, or an experiment folder (its models/model_best.pt)", path=True)
    checkpoint: Literal["best", "last"] = param("best", "for an experiment folder: model_best.pt or model_last.pt")
    prefix: dict[str, str] = param(factory=dict, doc="checkpoint key prefix -> model key prefix, e.g. "
                                                     "{'encoder.': 'question_encoder.'}; only mapped keys load; "
                                                     "{}: the whole model")
    strict: bool = param(True, "every model key the mapping targets must load (same name and shape)")


@dataclass(kw_only=True)
class TrainingSection:
    problem: dict[str, Any] = param(doc="the training problem: name and its parameters")
    optimizer: dict[str, Any] = param(factory=lambda: {"name": "Adam"},
                                      doc="name of a torch.optim optimizer and its keyword arguments")
    scheduler: dict[str, Any] | None = param(None, "name of a torch.optim.lr_scheduler and its arguments; "
                                                    "step_every: epoch|episode|validation")
    sampler: SamplerSection | None = param(None, "which samples to train on (finite datasets)")
    dataloader: DataLoaderSection = param(factory=DataLoaderSection, doc="DataLoader settings")
    terminal_conditions: TerminalConditions = param(factory=TerminalConditions, doc="when training stops")
    early_stopping: EarlyStopping = param(factory=EarlyStopping, doc="patience on the validation loss")
    gradient_clipping: float | None = param(None, "clamp every gradient component to [-c, c]; null: off", min=0)
    curriculum_learning: dict[str, Any] | None = param(None, "curriculum settings (must_finish and the "
                                                              "problem's own); null: off")
    seed: int = param(-1, "seed of Python, NumPy, torch and the problems; -1: draw one and record it", min=0,
                      max=MAX_SEED, also=(-1,))
    checkpoint_interval: int | None = param(None, "also write models/model_last.pt every N episodes; null or 0: "
                                                   "only at validations and epoch ends", min=0)
    log_interval: int = param(100, "episodes between console log lines (0: every episode)", min=0)
    precision: Literal[32, "32", "bf16", "16-mixed"] = param(
        "32", "32 (float32), bf16 (bfloat16 autocast) or 16-mixed (float16 autocast with a gradient scaler)")

    def __post_init__(self) -> None:
        self.precision = {32: "32"}.get(self.precision, self.precision)  # YAML reads 32 as an integer


@dataclass(kw_only=True)
class ValidationSection:
    problem: dict[str, Any] = param(doc="the validation problem: name and its parameters")
    sampler: SamplerSection | None = param(None, "which samples to validate on (finite datasets)")
    dataloader: DataLoaderSection = param(factory=DataLoaderSection, doc="DataLoader settings")
    interval: int | None = param(None, "validate every N episodes; null or 0: only at the end of each epoch", min=0)
    every_epoch: bool = param(True, "validate at the end of every epoch")
    num_batches: int | None = param(None, "validate on this many batches; null: the whole set", min=1)


@dataclass(kw_only=True)
class TestingSection:
    problem: dict[str, Any] = param(doc="the test problem: name and its parameters")
    sampler: SamplerSection | None = param(None, "which samples to test on (finite datasets)")
    dataloader: DataLoaderSection = param(factory=DataLoaderSection, doc="DataLoader settings")
    num_batches: int | None = param(None, "test on this many batches; null: the whole set", min=1)
    seed: int | None = param(None, "seed of the test data; null: the training seed", min=0, max=MAX_SEED)
    model_overrides: dict[str, Any] | None = param(
        None, "model parameters changed for this test only, e.g. {decoding: beam, beam_width: 5}: parameters that "
              "do not change the weights (a decoding policy), since the trained weights are loaded into the model")
    settings: dict[str, Any] | None = param(None, "named test settings (e.g. length_20, length_100): each one "
                                                  "changes this section with its own values; mip test runs "
                                                  "every setting into its own folder; a setting set to false "
                                                  "is dropped (one that a default config declares)")


#: the schemes of the MLflow tracking URIs a run may log to: a tracking server, or a database MLflow writes itself
#: (the file store, a bare path or ``file:``, is deprecated by MLflow: ``sqlite:///FILE.db`` replaces it)
MLFLOW_URI_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


@dataclass(kw_only=True)
class MlflowTracking:
    """An MLflow destination: each experiment is one run there, a grid a parent run of its experiments' runs."""

    uri: str = param(doc="tracking URI: http(s)://HOST:PORT of an MLflow server, or sqlite:///FILE.db (a relative "
                         "FILE is read relative to the config file)")
    experiment: str = param("miprometheus", "the MLflow experiment the runs belong to (made when missing)")
    flush_timeout: float = param(30.0, "seconds a finished run waits at most for MLflow to take what it has not "
                                       "taken yet (a tracker that is down); what is left is named in the log",
                                 min=0, max=3600)

    def __post_init__(self) -> None:
        scheme = self.uri.partition(":")[0].lower() if ":" in self.uri else ""
        if scheme not in MLFLOW_URI_SCHEMES:
            raise ValueError(f"'uri' must be a tracking URI of one of the schemes {', '.join(MLFLOW_URI_SCHEMES)} "
                             f"(an MLflow server http://HOST:PORT, or sqlite:///FILE.db), got {self.uri!r}")
        if not self.experiment.strip():
            raise ValueError("'experiment' must name an MLflow experiment, got an empty name")


@dataclass
class TrackingSection:
    """Where an experiment is tracked besides its own folder (DESIGN §8)."""

    mlflow: MlflowTracking | None = param(None, "an MLflow tracking server or database: {uri, experiment}; "
                                                "null: off")


SECTIONS = {"training": TrainingSection, "validation": ValidationSection, "testing": TestingSection}
TOP_LEVEL = ["training", "validation", "testing", "model", "description", "tracking"]

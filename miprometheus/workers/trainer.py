"""The Trainer: one short loop over episodes; every feature is a callback."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from miprometheus.checkpoint import load_checkpoint, save_checkpoint
from miprometheus.config.experiment_spec import ExperimentSpec
from miprometheus.errors import CheckpointError
from miprometheus.layout import ASSETS, LAST, MODELS_DIR
from miprometheus.models import transfer
from miprometheus.problems.assets import apply_assets, build_training_assets, write_assets_file
from miprometheus.seeding import capture_rng_states, derive_seed, restore_rng_states, seed_everything
from miprometheus.workers import callbacks as cb
from miprometheus.workers.components import (
    build_model,
    build_problem,
    check_declared_statistics,
    check_first_batch,
    forward,
    to_device,
)
from miprometheus.workers.evaluation import evaluate, row_values
from miprometheus.workers.loaders import ProblemLoader
from miprometheus.workers.precision import autocast, check_precision, make_scaler
from miprometheus.workers.run_folder import ExperimentFolder

LAST_CHECKPOINT = Path(MODELS_DIR) / LAST


@dataclass
class TrainState:
    """Where training stands; saved in the last checkpoint."""

    episode: int = 0  # completed episodes
    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # completed batches of the current epoch
    elapsed: float = 0.0  # seconds of training before this process (resumes)


class Trainer:
    """Trains a model on a problem as a validated ExperimentSpec describes, in an ExperimentFolder."""

    def __init__(self, spec: ExperimentSpec, seed: int, device: str = "cpu",
                 tensorboard: int | None = None, log_interval: int | None = None,
                 progress: bool | None = None, extra_callbacks: list[cb.Callback] | None = None,
                 visualize: int | str | None = None, resuming: bool = False,
                 assets: dict[str, Any] | None = None) -> None:
        training = spec.training
        self.spec, self.seed = spec, seed
        self.experiment: ExperimentFolder | None = None
        self.folder = Path(".")
        self.logger = logging.getLogger("miprometheus.trainer")
        self.device = torch.device(device)
        self.log_interval = log_interval or training.log_interval
        seed_everything(seed)
        self.problem = build_problem(spec.splits["training"])
        self.problem.seed(derive_seed(seed, "training"))
        # Vocabularies and answer sets come from the training split only (a resumed run gets its saved ones).
        self.assets = assets if assets is not None else build_training_assets(self.problem)
        apply_assets(self.problem, self.assets)
        self.precision = check_precision(training.precision, self.device, spec.config.where("training.precision"))
        self.model = build_model(spec, self.problem)
        # Transfer before training, not on resume: a resumed run loads its own weights (and the source
        # checkpoint may be gone by then). Freezing applies to both, so the optimizer has the same parameters.
        self.transfer: dict[str, Any] = {}
        if spec.init_from is not None and not resuming:
            self.transfer["init_from"] = transfer.load_into(self.model, spec.init_from,
                                                            spec.config.where("model.init_from"))
        if spec.freeze:
            self.transfer["frozen"] = transfer.freeze(self.model, spec.freeze, spec.config.where("model.freeze"))
        self.model.to(self.device)
        self.loader = ProblemLoader(self.problem, training.sampler, training.dataloader,
                                    derive_seed(seed, "training-sampler"), "training.sampler: ", self.device)
        self.validation = None
        if "validation" in spec.splits:
            split = spec.splits["validation"]
            self.val_problem = build_problem(split)
            apply_assets(self.val_problem, self.assets)
            self.validation = ProblemLoader(self.val_problem, split.section.sampler, split.section.dataloader,
                                            derive_seed(seed, "validation-sampler"), "validation.sampler: ",
                                            self.device)
        self.trainable = transfer.trainable_parameters(self.model)
        self.optimizer = spec.optimizer.cls(self.trainable, **spec.optimizer.kwargs)
        self.scaler = make_scaler(self.device, self.precision)
        self.scheduler = spec.scheduler.cls(self.optimizer, **spec.scheduler.kwargs) if spec.scheduler else None
        self.state = TrainState()
        self.resumed = False
        self.stop_cause: str | None = None
        self.stop_reason = ""
        self.last_training_stats: dict[str, float] | None = None
        self.last_validation_stats: dict[str, float] | None = None
        self._checkpoint_requested = False
        self._first_batch_checked = False
        self._statistics_checked = False
        self._signal: str | None = None
        self.visualize = visualize  # --visualize: samples per validation, or "window"
        self.last_batch: dict[str, Any] | None = None  # what --visualize draws when there is no validation
        self.callbacks = self._make_callbacks(tensorboard, progress) + list(extra_callbacks or [])

    def attach(self, experiment: ExperimentFolder) -> None:
        """Write into this experiment's folder and log (components are built before it exists, so
        that bad input fails without leaving a folder behind)."""
        self.experiment, self.folder, self.logger = experiment, experiment.folder, experiment.logger
        if self.assets is not None:
            write_assets_file(self.folder / ASSETS, self.problem.name, self.assets)

    def _make_callbacks(self, tensorboard: int | None, progress: bool | None) -> list[cb.Callback]:
        """The callbacks, in the order every hook calls them. The order matters:
        the curriculum grows the problem at an epoch's end before validation runs; validation runs (and
        emits ``on_validation_end`` to everyone) before the statistics rows and checkpoints of that
        episode are written, so the best checkpoint holds the weights just validated; early stopping
        reads the validation just done; the console and TensorBoard only report; visualization comes last
        (it reseeds only the validation problem, so nothing it does changes training).
        On ``on_train_end``, the final validation runs before the best checkpoint is settled and the files
        are closed.
        """
        training = self.spec.training
        callbacks: list[cb.Callback] = []
        if self.spec.curriculum is not None:
            callbacks.append(cb.CurriculumCallback())
        if self.validation is not None:
            callbacks.append(cb.ValidationCallback())
        callbacks += [cb.StatisticsCSVCallback(), cb.CheckpointCallback()]
        if training.early_stopping.patience:  # validate() made sure there is a validation section
            callbacks.append(cb.EarlyStoppingCallback(training.early_stopping.patience,
                                                      training.early_stopping.min_delta))
        callbacks.append(cb.ConsoleCallback(self.log_interval, progress))
        if tensorboard is not None:
            callbacks.append(cb.TensorBoardCallback(tensorboard))
        if self.visualize is not None:
            callbacks.append(cb.VisualizationCallback(self.visualize))
        return callbacks

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train until a terminal condition; return the termination cause."""
        loaders = [self.loader] + ([self.validation] if self.validation is not None else [])
        if self.experiment is not None and any(loader.settings.num_workers > 0 for loader in loaders):
            self.experiment.wait_for_background()
        transfer.set_train_mode(self.model, self.spec.freeze)
        self._emit("on_train_start")
        self._started = time.perf_counter()
        self._check_limits()  # a resumed run may already be at its limit
        old_handlers = self._install_signal_handlers()
        try:
            while self.stop_cause is None:
                per_epoch = self.loader.batches_per_epoch
                for batch in self.loader.epoch(self.state.epoch, self.state.batch_in_epoch):
                    stats = self._train_step(batch)
                    self._end_episode(stats, per_epoch)
                    if self.stop_cause is not None:
                        break
        except BaseException:
            # Files are closed and the progress bar stopped even when training raises; the error wins.
            self.stop_cause = self.stop_cause or "error"
            for callback in self.callbacks:
                with contextlib.suppress(Exception):
                    callback.on_train_end(self, "error")
            raise
        finally:
            self._restore_signal_handlers(old_handlers)
        self._emit("on_train_end", self.stop_cause)
        if self.stop_cause != "nan":
            self._save_last()
        return self.stop_cause

    def _train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        batch = to_device(batch, self.device)
        self.last_batch = batch
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            # Logits in float32 whatever the precision: they are what the model declares, and the
            # problem's loss and statistics are computed on them in full precision.
            predictions, extras = forward(self.model, batch)
            if not self._first_batch_checked:
                check_first_batch(self.problem, self.model, batch, predictions, extras)
            if extras:
                batch = {**batch, **extras}
                self._first_batch_checked = True
            loss = self.problem.loss(batch, predictions)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            self.stop("nan", f"the training loss is {loss_value} at episode {self.state.episode + 1}")
        else:
            # float16: the scaler multiplies the loss so small gradients do not underflow, divides the
            # gradients back before clipping, and skips the step (lowering the scale) when one is inf/NaN.
            # Other precisions: a disabled scaler, i.e. plain backward() and optimizer.step().
            self.scaler.scale(loss).backward()
            if self.spec.training.gradient_clipping is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_value_(self.trainable, self.spec.training.gradient_clipping)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._step_scheduler("episode")
        with torch.no_grad():
            statistics = self.problem.statistics(batch, predictions.detach())
        if not self._statistics_checked:
            check_declared_statistics(self.problem, statistics)
            self._statistics_checked = True
        stats = row_values(statistics)
        return {"episode": self.state.episode + 1, "epoch": self.state.epoch, "loss": loss_value, **stats,
                "time": round(self.state.elapsed + time.perf_counter() - self._started, 4)}

    def _end_episode(self, stats: dict[str, float], per_epoch: int) -> None:
        state = self.state
        state.episode += 1
        state.batch_in_epoch += 1
        if self.stop_cause == "nan":
            return
        self.last_training_stats = stats
        self._emit("on_episode_end", stats)
        if state.batch_in_epoch >= per_epoch:
            state.epoch += 1
            state.batch_in_epoch = 0
            self._step_scheduler("epoch")
            self._emit("on_epoch_end")
        self._check_terminal_conditions(stats)
        if self._signal and self.stop_cause is None:
            self.stop("interrupted", f"received {self._signal}")
        if self._checkpoint_requested and self.stop_cause is None:
            self._save_last()

    def _check_terminal_conditions(self, stats: dict[str, float]) -> None:
        limits = self.spec.training.terminal_conditions
        if limits.loss_stop is not None and self._curriculum_done():
            loss = (self.last_validation_stats or {}).get("loss") if self.validation else stats["loss"]
            if loss is not None and loss < limits.loss_stop:
                self.stop("converged", f"loss {loss:.6g} < loss_stop {limits.loss_stop}")
        self._check_limits()

    def _check_limits(self) -> None:
        limits = self.spec.training.terminal_conditions
        if limits.episode_limit is not None and self.state.episode >= limits.episode_limit:
            self.stop("limit", f"episode limit {limits.episode_limit} reached")
        if limits.epoch_limit is not None and self.state.epoch >= limits.epoch_limit:
            self.stop("limit", f"epoch limit {limits.epoch_limit} reached")

    def _curriculum_done(self) -> bool:
        for callback in self.callbacks:
            if isinstance(callback, cb.CurriculumCallback) and self.spec.curriculum.must_finish:
                return callback.done
        return True

    def stop(self, cause: str, reason: str) -> None:
        """Ask the loop to stop after this episode (the first cause wins)."""
        if self.stop_cause is None:
            self.stop_cause, self.stop_reason = cause, reason
            self.logger.info("stopping: %s", reason)

    def _step_scheduler(self, event: str, validation_loss: float | None = None) -> None:
        """The one place the learning-rate scheduler steps: at the event its ``step_every`` names."""
        if self.scheduler is None or self.spec.scheduler_step_every != event:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(validation_loss if validation_loss is not None else self.last_training_stats["loss"])
        else:
            self.scheduler.step()

    def request_checkpoint(self) -> None:
        self._checkpoint_requested = True

    def _emit(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    # --- validation ------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Validate on the same data every time (the validation problem is reseeded), return exact aggregates."""
        section = self.spec.splits["validation"].section
        self.val_problem.seed(derive_seed(self.seed, "validation"))
        _, aggregate = evaluate(self.val_problem, self.model, self.validation.epoch(0), self.device,
                                section.num_batches, self.validation.batches_per_epoch, "validation", self.logger,
                                autocast=lambda: autocast(self.device, self.precision))
        transfer.set_train_mode(self.model, self.spec.freeze)  # evaluate() put the whole model back in train mode
        stats = {"episode": self.state.episode, "epoch": self.state.epoch, **aggregate}
        self.last_validation_stats = stats
        self._step_scheduler("validation", stats["loss"])
        self._emit("on_validation_end", stats)
        return stats

    # --- checkpoints and resume -------------------------------------------------------------------
    def _save_last(self) -> None:
        self._checkpoint_requested = False
        state = asdict(self.state)
        state["elapsed"] = self.state.elapsed + time.perf_counter() - self._started
        save_checkpoint(self.folder / LAST_CHECKPOINT, {
            "kind": "last", "model_name": self.model.name, "problem_name": self.problem.name,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),  # float16 only: the loss scale and its growth tracker
            "rng": capture_rng_states(), "problem": self.problem.state_dict(), "trainer": state,
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks},
            "stop_cause": self.stop_cause,
        })
        self._emit("on_checkpoint")

    def resume(self, checkpoint_path: Path) -> None:
        """Continue exactly where ``model_last.pt`` stopped: weights, optimizer, RNGs, data position."""
        payload = load_checkpoint(checkpoint_path, map_location=self.device)
        if payload.get("kind") != "last":
            raise CheckpointError(f"{checkpoint_path} is not a resume checkpoint (kind {payload.get('kind')!r})")
        if payload.get("model_name") != self.model.name or payload.get("problem_name") != self.problem.name:
            raise CheckpointError(f"{checkpoint_path} was written for model {payload.get('model_name')} on "
                                  f"{payload.get('problem_name')}, not {self.model.name} on {self.problem.name}")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload.get("scheduler") is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler.is_enabled() and payload.get("scaler"):  # empty when the run was not float16
                self.scaler.load_state_dict(payload["scaler"])
            self.problem.load_state_dict(payload["problem"])
            restore_rng_states(payload["rng"])
            self.state = TrainState(**payload["trainer"])
            states = payload.get("callbacks", {})
            for callback in self.callbacks:
                if type(callback).__name__ in states:
                    callback.load_state_dict(states[type(callback).__name__])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{checkpoint_path} does not match this experiment: {exc}") from None
        self.resumed = True
        self.logger.info("resuming at episode %d (epoch %d)", self.state.episode, self.state.epoch)

    # --- signals ------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signum: int, frame: Any) -> None:
            self._signal = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    def _restore_signal_handlers(self, old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

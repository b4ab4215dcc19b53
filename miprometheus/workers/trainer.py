"""The Trainer: one short loop over episodes; every feature is a callback."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from miprometheus.checkpoint import finite_weights, load_checkpoint, save_checkpoint
from miprometheus.config.experiment_spec import ExperimentSpec
from miprometheus.errors import CheckpointError
from miprometheus.layout import ASSETS, LAST, MODELS_DIR
from miprometheus.models import transfer
from miprometheus.problems.assets import write_assets_file
from miprometheus.seeding import capture_rng_states, derive_seed, restore_rng_states
from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.components import check_declared_statistics, to_device
from miprometheus.workers.evaluation import evaluate
from miprometheus.workers.precision import autocast, make_scaler
from miprometheus.workers.run_folder import ExperimentFolder
from miprometheus.workers.setup import PreparedSplit, set_up_split
from miprometheus.workers.step import device_row, read_rows, run_step
from miprometheus.workers.stop_cause import StopCause

LAST_CHECKPOINT = Path(MODELS_DIR) / LAST


@dataclass
class TrainState:
    """Where training stands; saved in the last checkpoint."""

    episode: int = 0  # completed episodes
    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # completed batches of the current epoch
    elapsed: float = 0.0  # seconds of training before this process (resumes)


class Trainer:
    """Trains a model on a problem as a validated ExperimentSpec describes, in an experiment folder.

    ``callbacks``: the features of the run (``callbacks.default_callbacks(spec, options)`` gives the usual
    ones). ``log_interval``: episodes between read-backs of the training statistics (default: the config's).
    ``resuming``: the weights will come from :meth:`resume` (``model.init_from`` is not loaded).
    ``assets``: a resumed run's saved vocabularies (default: built from the training split).
    """

    def __init__(self, spec: ExperimentSpec, seed: int, device: str = "cpu", callbacks: list[Callback] | None = None,
                 *, log_interval: int | None = None, resuming: bool = False,
                 assets: dict[str, Any] | None = None) -> None:
        self.spec, self.seed = spec, seed
        self.device = torch.device(device)
        self.experiment: ExperimentFolder | None = None
        self.folder = Path(".")
        self.logger = logging.getLogger("miprometheus.trainer")
        training = set_up_split(spec, spec.splits["training"], self.device, global_seed=seed,
                                data_seed=derive_seed(seed, "training"),
                                sampler_seed=derive_seed(seed, "training-sampler"),
                                assets=assets, own_assets=assets is None, resuming=resuming)
        self.problem, self.model, self.loader = training.problem, training.model, training.loader
        self.assets, self.precision, self.transfer = training.assets, training.precision, training.transfer
        self.validation: PreparedSplit | None = None
        if "validation" in spec.splits:
            self.validation = set_up_split(spec, spec.splits["validation"], self.device, with_model=False,
                                           sampler_seed=derive_seed(seed, "validation-sampler"), assets=self.assets,
                                           fits_model=self.model)  # a problem the model does not fit: before any step
        self.trainable = transfer.trainable_parameters(self.model)
        self.optimizer = spec.optimizer.cls(self.trainable, **spec.optimizer.kwargs)
        self.scaler = make_scaler(self.device, self.precision)
        self.scheduler = spec.scheduler.cls(self.optimizer, **spec.scheduler.kwargs) if spec.scheduler else None
        self.callbacks = list(callbacks or [])
        self.state = TrainState()
        self.resumed = False
        self.stop_cause: StopCause | None = None
        self.stop_reason = ""
        self.last_training_stats: dict[str, float] | None = None
        self.last_validation_stats: dict[str, float] | None = None
        self.last_batch: dict[str, Any] | None = None  # what --visualize draws when there is no validation
        self.read_every = self._read_every(log_interval or spec.training.log_interval)
        self._pending: list[dict[str, Any]] = []  # statistics of the episodes not read back yet
        self._checkpoint_requested = False
        self._first_batch_checked = False
        self._signal: str | None = None
        self._started: float | None = None  # perf_counter() when fit() began

    def _read_every(self, log_interval: int) -> int:
        """Episodes between read-backs of the statistics. Every episode when a decision needs the training
        loss at once (``loss_stop`` without validation, a plateau scheduler stepped per episode)."""
        limits, scheduler = self.spec.training.terminal_conditions, self.spec.scheduler
        per_episode = (limits.loss_stop is not None and self.validation is None) or (
            scheduler is not None and scheduler.step_every == "episode"
            and issubclass(scheduler.cls, torch.optim.lr_scheduler.ReduceLROnPlateau))
        return 1 if per_episode else max(1, log_interval)

    def attach(self, experiment: ExperimentFolder) -> None:
        """Write into this experiment's folder and log (components are built before it exists, so
        that bad input fails without leaving a folder behind)."""
        self.experiment, self.folder, self.logger = experiment, experiment.folder, experiment.logger
        if self.assets is not None:
            write_assets_file(self.folder / ASSETS, self.problem.name, self.assets)

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> StopCause:
        """Train until a terminal condition; return the cause. ``on_train_end`` runs for every callback,
        also when training raises (after ``on_exception``); the error then propagates."""
        self._wait_for_background()
        transfer.set_train_mode(self.model, self.spec.model.freeze)
        self._emit("on_train_start")
        self._started = time.perf_counter()
        self._check_limits()  # a resumed run may already be at its limit
        try:
            with self._signals_caught():
                while self.stop_cause is None:
                    per_epoch = self.loader.batches_per_epoch
                    for batch in self.loader.epoch(self.state.epoch, self.state.batch_in_epoch):
                        self.run_step(batch)
                        self._end_episode(per_epoch)
                        if self.stop_cause is not None:
                            break
                self.read_back()
        except BaseException as error:
            self._fail(error)
            raise
        self.check_weights()  # before on_train_end, which may save them as the best
        self._emit("on_train_end", self.stop_cause)
        if self.stop_cause.weights_usable:
            self._save_last()
        return self.stop_cause

    def run_step(self, batch: dict[str, Any]) -> None:
        """One optimisation step. Its loss and statistics stay on the device until :meth:`read_back`."""
        batch = to_device(batch, self.device)
        self.last_batch = batch
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            step = run_step(self.problem, self.model, batch, check_first=not self._first_batch_checked)
        # float16: the scaler multiplies the loss so small gradients do not underflow, divides the gradients
        # back before clipping, and skips the step (lowering the scale) when one is inf/NaN. Other precisions:
        # a disabled scaler, i.e. plain backward() and optimizer.step(). A NaN loss is found when the block
        # is read back; the weights it produced are never saved (see read_back).
        self.scaler.scale(step.loss).backward()
        if self.spec.training.gradient_clipping is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_value_(self.trainable, self.spec.training.gradient_clipping)
        try:
            self.scaler.step(self.optimizer)
        except RuntimeError as exc:
            if "overflow" not in str(exc):
                raise
            # a huge learning rate: the update does not fit the weights' dtype. Weights partly updated are
            # broken; nothing of this episode is kept (the last checkpoint stays the last good one).
            self._stop_broken(f"the optimizer's update overflowed at episode {self.state.episode + 1} ({exc})")
            return
        self.scaler.update()
        with torch.no_grad():
            statistics = self.problem.statistics(step.batch, step.predictions.detach())
        if not self._first_batch_checked:
            check_declared_statistics(self.problem, statistics)
            self._first_batch_checked = True
        self._pending.append({"episode": self.state.episode + 1, "epoch": self.state.epoch,
                              **device_row(step.loss, statistics),
                              "time": round(self.state.elapsed + time.perf_counter() - self._started, 4)})

    def _end_episode(self, per_epoch: int) -> None:
        if self.stop_cause is StopCause.NAN:
            return  # the step itself failed (run_step): this episode does not count
        state = self.state
        state.episode += 1
        state.batch_in_epoch += 1
        if state.episode % self.read_every == 0:
            self.read_back()
        if self.stop_cause is StopCause.NAN:
            return
        self._step_scheduler("episode")
        self._emit("on_episode_end")
        if state.batch_in_epoch >= per_epoch:
            state.epoch += 1
            state.batch_in_epoch = 0
            self._step_scheduler("epoch")
            self._emit("on_epoch_end")
        self._check_terminal_conditions()
        if self._signal and self.stop_cause is None:
            self.stop(StopCause.INTERRUPTED, f"received {self._signal}")
        if self._checkpoint_requested and self.stop_cause is None:
            self._save_last()

    def read_back(self) -> None:
        """Read the pending episodes' statistics back to the host in one transfer and hand them to the
        callbacks. A non-finite loss stops the run (cause ``nan``): its row and those after it are dropped."""
        if not self._pending:
            return
        rows, self._pending = read_rows(self._pending), []
        for i, row in enumerate(rows):
            if not math.isfinite(row["loss"]):
                self._stop_broken(f"the training loss is {row['loss']} at episode {row['episode']}")
                rows = rows[:i]
                break
        if rows:
            self.last_training_stats = rows[-1]
            self._emit("on_training_statistics", rows)

    def _stop_broken(self, reason: str) -> None:
        """Stop with cause ``nan``: the weights are broken. This cause overrides any asked for before (in the
        block being read back, or at the last episode): broken weights are never saved or validated."""
        if self.stop_cause is not StopCause.NAN:
            self.stop_cause, self.stop_reason = StopCause.NAN, reason
            self.logger.info("stopping: %s", reason)

    def check_weights(self) -> bool:
        """Whether the weights are finite; if not, the run stops with cause ``nan`` (a loss computed before the
        last step can be finite while that step made the weights inf/NaN)."""
        if self.stop_cause is StopCause.NAN:
            return False
        if not finite_weights(self.model.state_dict()):
            self._stop_broken(f"the weights are not finite after episode {self.state.episode}")
            return False
        return True

    def _check_terminal_conditions(self) -> None:
        limits = self.spec.training.terminal_conditions
        if limits.loss_stop is not None and self._curriculum_finished():
            stats = self.last_validation_stats if self.validation is not None else self.last_training_stats
            loss = (stats or {}).get("loss")
            if loss is not None and loss < limits.loss_stop:
                self.stop(StopCause.CONVERGED, f"loss {loss:.6g} < loss_stop {limits.loss_stop}")
        self._check_limits()

    def _check_limits(self) -> None:
        limits = self.spec.training.terminal_conditions
        if limits.episode_limit is not None and self.state.episode >= limits.episode_limit:
            self.stop(StopCause.LIMIT, f"episode limit {limits.episode_limit} reached")
        if limits.epoch_limit is not None and self.state.epoch >= limits.epoch_limit:
            self.stop(StopCause.LIMIT, f"epoch limit {limits.epoch_limit} reached")

    def _curriculum_finished(self) -> bool:
        curriculum = self.spec.curriculum
        return curriculum is None or not curriculum.settings.must_finish or self.problem.curriculum_finished

    def stop(self, cause: StopCause, reason: str) -> None:
        """Ask the loop to stop after this episode (the first cause wins)."""
        if self.stop_cause is None:
            self.stop_cause, self.stop_reason = cause, reason
            self.logger.info("stopping: %s", reason)

    def _step_scheduler(self, event: str, validation_loss: float | None = None) -> None:
        """The one place the learning-rate scheduler steps: at the event its ``step_every`` names."""
        if self.scheduler is None or self.spec.scheduler.step_every != event:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(validation_loss if validation_loss is not None else self.last_training_stats["loss"])
        else:
            self.scheduler.step()

    def request_checkpoint(self) -> None:
        """Write ``model_last.pt`` at the end of this episode."""
        self._checkpoint_requested = True

    def _emit(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _fail(self, error: BaseException) -> None:
        """Training raised: keep the statistics measured so far, tell every callback, close everything."""
        self.stop_cause = StopCause.ERROR  # whatever cause was asked for, the run failed
        with contextlib.suppress(Exception):
            rows, self._pending = read_rows(self._pending), []
            for callback in self.callbacks:
                with contextlib.suppress(Exception):
                    callback.on_training_statistics(self, rows)
        for hook, argument in (("on_exception", error), ("on_train_end", StopCause.ERROR)):
            for callback in self.callbacks:
                with contextlib.suppress(Exception):
                    getattr(callback, hook)(self, argument)

    # --- validation ------------------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        """Validate on the same data every time (the validation problem is reseeded), return exact aggregates
        (None when the statistics read back first show a NaN loss: those weights are not validated)."""
        self.read_back()
        if self.stop_cause is StopCause.NAN:
            return None
        validation, section = self.validation, self.spec.splits["validation"].section
        validation.problem.seed(derive_seed(self.seed, "validation"))
        _, aggregate = evaluate(validation.problem, self.model, validation.loader.epoch(0), self.device,
                                section.num_batches, validation.loader.batches_per_epoch, "validation", self.logger,
                                autocast=lambda: autocast(self.device, self.precision))
        transfer.set_train_mode(self.model, self.spec.model.freeze)  # evaluate() put the whole model in train mode
        stats = {"episode": self.state.episode, "epoch": self.state.epoch, **aggregate}
        self.last_validation_stats = stats
        self._step_scheduler("validation", stats["loss"])
        self._emit("on_validation_end", stats)
        return stats

    # --- checkpoints and resume -------------------------------------------------------------------
    def _save_last(self) -> None:
        self._checkpoint_requested = False
        self.read_back()  # the statistics files match the checkpoint; a NaN found now means: nothing to save
        if not self.check_weights():
            return
        state = asdict(self.state)
        if self._started is not None:
            state["elapsed"] = self.state.elapsed + time.perf_counter() - self._started
        save_checkpoint(self.folder / LAST_CHECKPOINT, {
            "kind": "last", "model_name": self.model.name, "problem_name": self.problem.name,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),  # float16 only: the loss scale and its growth tracker
            "rng": capture_rng_states(), "problem": self.problem.state_dict(), "trainer": state,
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "stop_cause": None if self.stop_cause is None else str(self.stop_cause),
        })
        if self._started is not None:  # the start checkpoint comes before the callbacks' on_train_start
            self._emit("on_checkpoint")

    def save_start_checkpoint(self) -> None:
        """Write ``model_last.pt`` before the first episode, so that a new experiment folder can be resumed
        from its first instant (``runs.py`` publishes the folder after it)."""
        self._save_last()

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
                if callback.state_key in states:
                    callback.load_state_dict(states[callback.state_key])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{checkpoint_path} does not match this experiment: {exc}") from None
        self.resumed = True
        self.logger.info("resuming at episode %d (epoch %d)", self.state.episode, self.state.epoch)

    # --- process ------------------------------------------------------------------------------------
    def _wait_for_background(self) -> None:
        """Loader worker processes fork: the experiment's background work (git) must be done before."""
        loaders = [self.loader] + ([self.validation.loader] if self.validation is not None else [])
        if self.experiment is not None and any(loader.settings.num_workers > 0 for loader in loaders):
            self.experiment.wait_for_background()

    @contextlib.contextmanager
    def _signals_caught(self) -> Iterator[None]:
        """SIGINT and SIGTERM end the run after the current episode (cause ``interrupted``), checkpoint saved."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self._signal = signal.Signals(signum).name

        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)

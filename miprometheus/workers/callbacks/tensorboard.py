"""TensorBoard: scalars (level 0), + weight histograms (1), + gradient histograms (2), the run's HParams, the graph."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from miprometheus.errors import ConfigError
from miprometheus.layout import TENSORBOARD_DIR
from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.config.experiment_spec import ExperimentSpec
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.trainer import Trainer


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every key of a configuration tree, dotted (sections too), with its value."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat[prefix + str(key)] = value
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def hparam_values(tree: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The values of the dotted ``keys`` in a configuration tree for the HParams tab: numbers, strings and booleans
    as they are (torch's ``hparams`` writes a boolean as 1/0), anything else (None too) as its text. A key the
    tree lacks is a ConfigError naming it and the closest key."""
    flat = _flatten(tree)
    unknown = [key for key in keys if key not in flat]
    if unknown:
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(flat), n=1, cutoff=0.6)
            lines.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"--hparams: {', '.join(lines)} {'is not a key' if len(unknown) == 1 else 'are not keys'} "
                          "of the experiment's effective configuration")
    return {key: flat[key] if isinstance(flat[key], (bool, int, float, str)) else str(flat[key]) for key in keys}


def check_hparam_keys(spec: ExperimentSpec, keys: Sequence[str]) -> None:
    """Refuse, before anything is built, a ``--hparams`` key that the experiment's effective configuration lacks.

    The values the problem supplies to the model are known once both are built; their names are accepted here.
    """
    from miprometheus.config.experiment_spec import from_problem_fields

    tree = spec.effective_tree()
    if spec.model is not None:
        tree["model"] = {**dict.fromkeys(from_problem_fields(spec.model.cls)), **tree["model"]}
    hparam_values(tree, keys)


class TensorBoardCallback(Callback):
    """Event files in ``tensorboard/``: the statistics as scalars; from ``level`` 1 the weights at every
    validation, from 2 the gradients every ``log_interval`` episodes, as histograms; the model's graph, traced
    on the first training batch of a new run, where it can be traced.

    With ``hparams`` (dotted config keys), the run's own event file also holds TensorBoard's HParams summaries:
    the keys' values with the validation statistics as metrics (the training statistics without a validation
    section), so the HParams tab compares the runs of a grid by their own scalars. Not a sub-directory per call
    as ``SummaryWriter.add_hparams`` makes (pytorch#32651): there the metrics would be copies, not the run's.
    """

    def __init__(self, level: int, log_interval: int, hparams: Sequence[str] = ()) -> None:
        self.level = level
        self.log_interval = max(1, log_interval)
        self.hparams = list(hparams)
        self.writer: Any = None
        self.graph_pending = False  # the model's graph, traced on the first training batch of a new run

    def on_train_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after the checkpoint it is resumed from
        purge = trainer.state.episode + 1 if trainer.resumed else None
        self.writer = SummaryWriter(str(trainer.folder / TENSORBOARD_DIR), purge_step=purge)
        self.graph_pending = not trainer.resumed  # the first start wrote it
        if self.hparams and not trainer.resumed:  # the run's first start wrote them, at step 0 (never purged)
            experiment, session_start, _ = self._hparams_summaries(trainer)
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(session_start)
            self.writer.flush()

    def _hparams_summaries(self, trainer: Trainer) -> tuple[Any, Any, Any]:
        """TensorBoard's experiment, session-start and session-end summaries of this run."""
        from torch.utils.tensorboard.summary import hparams

        tree = trainer.spec.effective_tree(trainer.model.params)
        tree["training"]["seed"] = trainer.seed  # the seed drawn for ``seed: -1``, as training_configuration.yaml
        split, problem = (("validation", trainer.validation.problem) if trainer.validation is not None
                          else ("training", trainer.problem))
        # only the metrics' names are written: TensorBoard reads their values from the run's scalars
        metrics = dict.fromkeys((f"{split}/{name}" for name in ("loss", *problem.statistic_definitions)), 0.0)
        return hparams(hparam_values(tree, self.hparams), metrics)

    def on_episode_end(self, trainer: Trainer) -> None:
        if self.graph_pending and trainer.last_batch is not None:
            self.graph_pending = False
            self._add_graph(trainer)
        step = trainer.state.episode
        if self.level >= 2 and step % self.log_interval == 0:  # the gradients of the step just taken
            for name, p in trainer.model.named_parameters():
                if p.grad is not None:
                    self.writer.add_histogram(f"gradients/{name}", p.grad, step)

    def _add_graph(self, trainer: Trainer) -> None:
        """The graph tab: the model traced on the first training batch (``torch.jit.trace``, in eval mode as
        ``SummaryWriter.add_graph`` does), or one warning saying why it cannot be traced."""
        from miprometheus.workers.components import model_inputs
        from miprometheus.workers.model_graph import add_tensorboard_graph

        reason = add_tensorboard_graph(self.writer, trainer.model, model_inputs(trainer.model, trainer.last_batch))
        if reason is not None:
            trainer.logger.warning("TensorBoard graph: %s cannot be traced (%s); the graph tab stays empty",
                                   trainer.model.name, reason)

    def on_training_statistics(self, trainer: Trainer, rows: list[dict[str, float]]) -> None:
        for stats in rows:
            for key, value in stats.items():
                if key != "episode":
                    self.writer.add_scalar(f"training/{key}", value, int(stats["episode"]))

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        step = trainer.state.episode
        for key, value in stats.items():
            if key != "episode":
                self.writer.add_scalar(f"validation/{key}", value, step)
        if self.level >= 1:
            for name, p in trainer.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach(), step)

    def on_checkpoint(self, trainer: Trainer) -> None:
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        if self.writer is None:
            return
        # The session ends once, with success: a stopped run that --resume continues has not ended.
        if self.hparams and cause.status == "completed":
            self.writer.file_writer.add_summary(self._hparams_summaries(trainer)[2])
        self.writer.close()

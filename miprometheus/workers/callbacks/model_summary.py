"""The model's summary in trainer.log, measured on the first training step; ``--graph``: its graph beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from miprometheus.workers.callbacks.base import Callback

if TYPE_CHECKING:
    from miprometheus.workers.stop_cause import StopCause
    from miprometheus.workers.summary import Measurement
    from miprometheus.workers.trainer import Trainer


class ModelSummaryCallback(Callback):
    """The table of ``mip summary`` in the log of a new run, measured on its first training batch by forward hooks
    that go away at the end of that forward pass (the step itself is the measurement: nothing runs twice, and the
    steps after it run without hooks). With ``graph``, the model's graph is drawn from the same batch into
    ``model_graph.svg``, ``.png`` and ``.gv`` in the experiment folder, to ``graph_depth`` levels (default:
    ``model_graph.GRAPH_DEPTH``); a graph that cannot be drawn is one line in the log, never a failed run.
    A resumed run logs and draws nothing: its first start did.
    """

    def __init__(self, graph: bool = False, graph_depth: int | None = None) -> None:
        self.graph = graph
        self.graph_depth = graph_depth
        self.measurement: Measurement | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        from miprometheus.workers.summary import Measurement

        if not trainer.resumed:
            self.measurement = Measurement(trainer.model, once=True)

    def on_episode_end(self, trainer: Trainer) -> None:
        if self.measurement is None:
            return
        measurement, self.measurement = self.measurement, None
        measurement.close()
        if measurement.measured:
            for line in measurement.summary(trainer.precision).text().splitlines():
                trainer.logger.info(line)
        if self.graph and trainer.last_batch is not None:
            self._draw(trainer)

    def _draw(self, trainer: Trainer) -> None:
        from miprometheus.layout import MODEL_GRAPH
        from miprometheus.workers.components import model_inputs
        from miprometheus.workers.model_graph import GRAPH_DEPTH, write_graph

        depth = GRAPH_DEPTH if self.graph_depth is None else self.graph_depth
        try:
            result = write_graph(trainer.model, model_inputs(trainer.model, trainer.last_batch), trainer.folder,
                                 MODEL_GRAPH, depth)
        except Exception as exc:  # a picture is never worth a failed run (a full disk fails the next checkpoint)
            trainer.logger.warning("model graph: not written (%s: %s)", type(exc).__name__, exc)
            return
        (trainer.logger.info if result.drawn else trainer.logger.warning)(result.message)

    def on_train_end(self, trainer: Trainer, cause: StopCause) -> None:
        if self.measurement is not None:  # the first step never ended (an error, a stop before it)
            self.measurement.close()
            self.measurement = None

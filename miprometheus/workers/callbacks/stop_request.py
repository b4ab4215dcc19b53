"""A stop asked for from outside the run: a search pruning a trial, or a user ending a run early on purpose.

The other process writes ``stop_request.json`` into the experiment folder (:func:`request_stop`); the run
honours it at its next validation or epoch end, with that stop cause: the checkpoint is written, the
statistics are complete, and run_info.json says who stopped it and why. Nothing is shared but the file,
so it works the same for a local child, a Ray task or a SLURM job on a shared file system.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from miprometheus.files import atomic_write_json
from miprometheus.layout import STOP_REQUEST
from miprometheus.workers.callbacks.base import Callback
from miprometheus.workers.stop_cause import StopCause

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer

#: the causes another process may ask for (the others are the run's own findings)
REQUESTABLE = (StopCause.PRUNED, StopCause.REQUESTED)


def request_stop(folder: Path | str, cause: StopCause = StopCause.REQUESTED, reason: str = "") -> Path:
    """Ask the run writing into experiment ``folder`` to stop at its next validation or epoch end."""
    if cause not in REQUESTABLE:
        raise ValueError(f"a run can be asked to stop as {' or '.join(map(str, REQUESTABLE))}, not {cause}")
    path = Path(folder) / STOP_REQUEST
    atomic_write_json(path, {"cause": str(cause), "reason": reason})
    return path


class StopRequestCallback(Callback):
    """Honours a :func:`request_stop` at each validation and epoch end; the request is consumed, so a
    resumed run does not stop again on it."""

    def on_validation_end(self, trainer: Trainer, stats: dict[str, float]) -> None:
        self._honour(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        self._honour(trainer)

    def _honour(self, trainer: Trainer) -> None:
        path = trainer.folder / STOP_REQUEST
        if not path.is_file():
            return
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
            cause = StopCause(request["cause"])
            reason = str(request.get("reason") or "")
            if cause not in REQUESTABLE:
                raise ValueError(f"cause {cause} cannot be requested")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            trainer.logger.warning("ignoring %s: %s", path, exc)
            return
        finally:
            path.unlink(missing_ok=True)
        trainer.stop(cause, f"{cause} at episode {trainer.state.episode}" + (f": {reason}" if reason else ""))

"""Why training stopped: one named cause, recorded in run_info.json as ``termination_cause``."""

from __future__ import annotations

from enum import Enum


class StopCause(str, Enum):
    """The cause of the end of a training run (its value is what run_info.json and the grid tables show)."""

    LIMIT = "limit"  # episode_limit or epoch_limit reached
    CONVERGED = "converged"  # the loss went below loss_stop
    EARLY_STOP = "early_stop"  # the validation loss stopped improving for `patience` validations
    NAN = "nan"  # the training loss was NaN or infinite: the weights after it are never saved
    INTERRUPTED = "interrupted"  # SIGINT or SIGTERM: the last checkpoint is saved, `--resume` continues
    ERROR = "error"  # training raised
    PRUNED = "pruned"  # a search stopped an unpromising trial
    REQUESTED = "requested"  # a caller asked the run to stop (a completed run, ended early on purpose)

    __str__ = str.__str__  # "nan", not "StopCause.NAN", in messages and logs

    @property
    def status(self) -> str:
        """The run's status in run_info.json: completed, failed, interrupted or pruned."""
        return {StopCause.NAN: "failed", StopCause.ERROR: "failed", StopCause.INTERRUPTED: "interrupted",
                StopCause.PRUNED: "pruned"}.get(self, "completed")

    @property
    def weights_usable(self) -> bool:
        """Whether the final weights are worth keeping and testing (not after a NaN or an error)."""
        return self not in (StopCause.NAN, StopCause.ERROR)

    @property
    def validates_at_end(self) -> bool:
        """Whether training ends with a validation of the final weights (a stopped run ends at once)."""
        return self.weights_usable and self not in (StopCause.INTERRUPTED, StopCause.PRUNED)


__all__ = ["StopCause"]

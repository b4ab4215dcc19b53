"""Exceptions raised by the library; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

#: The exit codes of every ``mip`` command and of the experiments a grid runs (DESIGN §5).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class MipError(Exception):
    """Base class of every error that MI-Prometheus reports to its user."""

    exit_code = EXIT_FAILED


class BadInputError(MipError):
    """The user's input is wrong (config, arguments, data, checkpoint): exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A configuration file, an override or a grid file is invalid."""


class RegistryError(ConfigError):
    """A component name (problem, model, optimizer, ...) is unknown."""


class HandshakeError(BadInputError):
    """A model does not fit a problem: their data definitions disagree."""


class DataError(BadInputError):
    """Data files are missing, corrupt or of the wrong format."""


class CheckpointError(BadInputError):
    """A checkpoint is missing, corrupt, or was not written by MI-Prometheus."""


class RunFailed(MipError):
    """An experiment started but could not complete (e.g. the loss became NaN)."""

    exit_code = EXIT_FAILED


class Interrupted(RunFailed):
    """A run was stopped by SIGINT/SIGTERM after writing its last checkpoint; ``--resume`` continues it."""

    exit_code = EXIT_INTERRUPTED

"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` (no pickle code runs)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from miprometheus.errors import CheckpointError
from miprometheus.files import atomic_write

FORMAT = "miprometheus-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors and plain values only) atomically."""
    payload = {"format": FORMAT, "version": VERSION, **content}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle), mode="wb")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; anything else is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(f"{path} is not an MI-Prometheus checkpoint: it holds objects that are not "
                              f"weights (refused without running them: {first[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by MI-Prometheus (no '{FORMAT}' marker)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer MI-Prometheus (format version {payload['version']})")
    return payload

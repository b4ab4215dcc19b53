"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` (no pickle code runs),
verified against the checksum they carry.

The checksum (format version 2) is ``"checksum": "sha256:<hex>"`` inside the saved dict, over its content:
every key, value and tensor (dtype, shape and bytes), in order, the ``checksum`` entry left out. It is
over the content rather than the file's bytes so that the file stays one plain ``torch.save`` dict (a
trailer would break the zip reader, a sidecar could disagree with it after a kill). A bit flipped in a
tensor, in a number or in the pickle changes the content or breaks the load: either is refused.
Checkpoints of version 1 (written before checksums) load unverified.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from miprometheus.errors import CheckpointError
from miprometheus.files import atomic_write

FORMAT = "miprometheus-checkpoint"
VERSION = 2
#: the first format version whose checkpoints carry a checksum
CHECKSUM_VERSION = 2
CHECKSUM = "checksum"


def content_checksum(payload: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a checkpoint's content (its ``checksum`` entry left out)."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in payload.items() if key != CHECKSUM})
    return f"sha256:{digest.hexdigest()}"


def _feed(digest: Any, value: Any) -> None:
    # A type tag before each value, lengths before each container: two different contents never feed
    # the same bytes.
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)};".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy().data)
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)};".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, (bytes, bytearray)):
        digest.update(f"B{len(value)};".encode())
        digest.update(value)
    else:  # str, int, float (repr keeps nan/inf and every bit), bool, None, torch.Size, dtypes
        text = repr(value)
        digest.update(f"{type(value).__name__}{len(text)};{text}".encode())


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors and plain values only) atomically, with its checksum."""
    payload = {"format": FORMAT, "version": VERSION, **content}
    payload[CHECKSUM] = content_checksum(payload)
    atomic_write(Path(path), lambda handle: torch.save(payload, handle), mode="wb")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and verify its checksum; anything else
    (missing, empty, corrupt, forged, altered, from another program) is a CheckpointError naming the file.

    Tensors come back on the CPU whatever ``map_location`` (kept for callers): the checksum reads their
    bytes there, ``load_state_dict`` copies them onto the model's and the optimizer's device, and the RNG
    states must be CPU tensors anyway.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the checkpoint was never written completely; "
                              "nothing can be loaded from it")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(f"{path} is not an MI-Prometheus checkpoint: it holds objects that are not "
                              f"weights (refused without running them: {first[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is a corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is corrupt or truncated: {first[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by MI-Prometheus (no '{FORMAT}' marker)")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} was written by a newer MI-Prometheus (format version {version!r})")
    if version >= CHECKSUM_VERSION:
        stored = payload.get(CHECKSUM)
        if not isinstance(stored, str):
            raise CheckpointError(f"{path} is damaged: format version {version} carries a checksum, this file has none")
        if content_checksum(payload) != stored:
            raise CheckpointError(f"{path} is corrupt: its content does not match its checksum (the file was "
                                  "changed after it was written: a disk or copy error, or an edit); refused "
                                  "rather than training or testing on damaged weights")
    _check_weights_entry(path, payload)
    return payload


def _check_weights_entry(path: Path, payload: dict[str, Any]) -> None:
    """The ``model`` entry, when there is one, is a state dict: names to tensors."""
    if "model" not in payload:
        return
    weights = payload["model"]
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path} is damaged: its 'model' entry is a {type(weights).__name__}, not a dict "
                              "of weights (name -> tensor)")
    wrong = [str(key) for key, value in weights.items()
             if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if wrong:
        raise CheckpointError(f"{path} is damaged: its 'model' entry holds {len(wrong)} value(s) that are not "
                              f"tensors named by strings (first: {wrong[0][:80]})")


def finite_weights(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is finite (one read of the device)."""
    checks = [torch.isfinite(t).all() for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return not checks or bool(torch.stack(checks).all())


__all__ = ["CHECKSUM", "FORMAT", "VERSION", "content_checksum", "finite_weights", "load_checkpoint",
           "save_checkpoint"]

"""Numeric precision of training and testing: float32, or autocast to bfloat16 / float16 (+ gradient scaler)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from miprometheus.errors import ConfigError

PRECISIONS = ("32", "bf16", "16-mixed")
_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


def check_precision(precision: str, device: torch.device, where: str = "") -> str:
    """The precision, once it is known to work on ``device`` (a ConfigError otherwise, before any folder exists)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}training.precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{where}training.precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has "
                          "no bfloat16 support; use 16-mixed")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the enclosed forward pass (and loss) in ``precision``: nothing changes for "32"."""
    if precision == "32":
        yield
        return
    dtype = _DTYPES[precision]
    with contextlib.ExitStack() as stack:
        if device.type == "cpu" and not _onednn_supports(dtype):
            # CPU autocast sends recurrent layers to oneDNN in the low-precision type, which fails
            # ("could not create a primitive descriptor") on CPUs without native bf16/fp16 (e.g. AVX2).
            # Without oneDNN they run in float32 through torch's own kernels; matmuls and convolutions
            # are still autocast.
            stack.enter_context(_onednn_off())
        stack.enter_context(torch.autocast(device.type, dtype=dtype))
        yield


@contextlib.contextmanager
def _onednn_off() -> Iterator[None]:
    # Only the ``enabled`` flag: torch.backends.mkldnn.flags() would also reset ``deterministic``.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def _onednn_supports(dtype: torch.dtype) -> bool:
    try:
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # a torch build without these probes: assume the worst
        return False


def precision_note(device: torch.device, precision: str) -> str:
    """A line for the log: the precision, and what it means on this device."""
    if precision != "32" and device.type == "cpu" and not _onednn_supports(_DTYPES[precision]):
        kind = "bfloat16" if precision == "bf16" else "float16"
        return (f"{precision} on a CPU without native {kind} support: recurrent layers run in float32, "
                "and mixed precision is slower than 32 here (it is meant for GPUs)")
    return precision


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The gradient scaler: active for float16 (whose small gradients underflow), a pass-through otherwise.

    A disabled scaler's ``scale``/``step``/``update`` are the plain ``loss``/``optimizer.step()``/no-op,
    so the training step has one code path for every precision.
    """
    return torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")


__all__ = ["PRECISIONS", "autocast", "check_precision", "make_scaler", "precision_note"]

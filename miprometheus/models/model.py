"""The Model base class: a trainable network with declared inputs and outputs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.params import NoParams, check_bounds


class Model(torch.nn.Module):
    """A trainable ``torch.nn.Module`` with declared input and output data definitions.

    Subclasses declare ``Params`` (a dataclass; fields marked ``from_problem=True`` are filled
    from the problem's ``default_values`` unless set in the config), set ``input_definitions``
    (the batch keys ``forward`` reads) and ``output_definitions`` (``{"predictions": ...}``) in
    ``__init__``, and implement ``forward(batch) -> predictions`` (logits, as a tensor).

    Internals for visualisation: while ``recording`` is True, ``forward`` stores what it wants to
    show (hidden states, attention, memory, feature maps; detached tensors) in ``internals``;
    :meth:`plot` draws them. ``internals`` is emptied at every call of the model (a new dict), so
    it never accumulates across batches and stays empty while not recording.
    """

    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any) -> None:
        super().__init__()
        check_bounds(params, f"model {self.name}")  # the bounds its Params declare (param(min=, max=))
        self.params = params
        self.input_definitions: dict[str, DataDefinition] = {}
        self.output_definitions: dict[str, DataDefinition] = {}
        #: when True, ``forward`` stores tensors to show in ``internals`` (off: no copies, no cost).
        self.recording = False
        self.internals: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Reset here rather than in a forward pre-hook: a hook would take every call off
        # torch's hook-free fast path, and subclasses' forward need not remember to do it.
        if self.internals:
            self.internals = {}
        return super().__call__(*args, **kwargs)

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def plot(self, batch: dict[str, Any], predictions: torch.Tensor, index: int) -> Any:
        """Figures of sample ``index`` from ``internals`` of the last (recorded) forward of ``batch``.

        Returns a ``matplotlib.figure.Figure``, frames over time (``miprometheus.plotting.Frames``,
        or a list of Figures of one size) or None (nothing to show, the default). Built with
        matplotlib's object-oriented API, never ``pyplot``.
        """
        return None


def sequence_definitions(params: Any) -> tuple[dict[str, DataDefinition], dict[str, DataDefinition]]:
    """``(input_definitions, output_definitions)`` of a sequence-to-sequence model: ``sequences`` [B, T, I] in,
    logits for every step ``predictions`` [B, T, O] out (the recurrent and memory-augmented networks), with I and
    O the ``input_item_size`` and ``output_item_size`` of the model's ``params``."""
    i, o = int(params.input_item_size), int(params.output_item_size)
    inputs = {"sequences": DataDefinition((ANY, ANY, i), "float32", "input items [B, T, I]")}
    outputs = {"predictions": DataDefinition((ANY, ANY, o), "float32", "logits for every step [B, T, O]")}
    return inputs, outputs

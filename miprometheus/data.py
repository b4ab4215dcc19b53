"""Data definitions and the handshake between a problem and a model (DESIGN §4).

This module does not import torch at import time; tensors are only inspected duck-typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from miprometheus.errors import HandshakeError

ANY = -1

#: The names of the values a problem hands to models (``Problem.default_values``, and model parameters
#: declared ``from_problem=True``): one vocabulary for the whole zoo, so any model fits any problem that
#: publishes what it needs. DESIGN §4 lists the same table; a test keeps the two equal.
VALUE_NAMES: dict[str, str] = {
    "num_classes": "number of classes (size of the logits of a classifier)",
    "num_channels": "channels of an image (1 grey, 3 RGB)",
    "height": "image height in pixels, as the model receives it (after resizing)",
    "width": "image width in pixels, as the model receives it",
    "input_item_size": "size of one item of an input sequence",
    "output_item_size": "size of one item of the output sequence (logits per step)",
    "store_bit": "control channel that marks the store phase of an algorithmic task",
    "recall_bit": "control channel that marks the recall phase of an algorithmic task",
    "question_vocabulary_size": "number of question tokens, PAD and UNK included",
    "answer_vocabulary_size": "number of answers (classes of a VQA model)",
    "input_vocabulary_size": "number of source-language tokens, specials included",
    "output_vocabulary_size": "number of target-language tokens, specials included",
    "pad_index": "index of the PAD token (0 in every vocabulary)",
    "unk_index": "index of the UNK token (words unseen in the training split)",
    "sos_index": "index of the start-of-sequence token",
    "eos_index": "index of the end-of-sequence token",
    "max_question_length": "longest question in tokens",
    "max_sequence_length": "longest input sequence the problem generates or holds",
    "num_objects": "number of objects of a scene (Sort-of-CLEVR)",
    "feature_size": "size of one pre-extracted image feature vector",
}


@dataclass(frozen=True)
class DataDefinition:
    """What one entry of a batch (or of a model's output) is: shape, dtype and meaning.

    ``shape`` lists the dimensions, batch first; ``-1`` (or ``None``) means "any size".
    ``dtype`` is a torch dtype name without the ``torch.`` prefix (``float32``, ``int64``, ...),
    or ``"list"`` for a Python list (e.g. label strings), or ``"any"``.
    """

    shape: tuple[int, ...]
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(ANY if d is None else int(d) for d in self.shape))

    def __str__(self) -> str:
        dims = ", ".join("*" if d == ANY else str(d) for d in self.shape)
        return f"[{dims}] {self.dtype}" + (f" ({self.description})" if self.description else "")

    def accepts(self, other: DataDefinition) -> bool:
        """True when data described by ``other`` is valid input for a consumer declaring ``self``."""
        if "any" not in (self.dtype, other.dtype) and self.dtype != other.dtype:
            return False
        if len(self.shape) != len(other.shape):
            return False
        return all(a == ANY or b == ANY or a == b for a, b in zip(self.shape, other.shape))

    def matches_value(self, value: Any) -> str | None:
        """Check a real value against this definition; return why it does not match, or None."""
        if self.dtype == "list":
            return None if isinstance(value, (list, tuple)) else f"expected a list, got {type(value).__name__}"
        shape = getattr(value, "shape", None)
        if shape is None:
            return f"expected a tensor, got {type(value).__name__}"
        dtype = str(value.dtype).removeprefix("torch.")
        if self.dtype != "any" and dtype != self.dtype:
            return f"dtype is {dtype}, expected {self.dtype}"
        if len(shape) != len(self.shape) or any(d != ANY and d != s for d, s in zip(self.shape, shape)):
            return f"shape is {list(shape)}, expected {str(self).split(' ')[0]}"
        return None


Definitions = Mapping[str, DataDefinition]


def _mismatch(key: str, provider: str, provided: DataDefinition | None, consumer: str,
              expected: DataDefinition, what: str) -> str:
    got = "nothing (the key is missing)" if provided is None else str(provided)
    return (f"'{key}': {consumer} expects {expected}, but {provider} {what} {got}")


def handshake(problem_name: str, problem_outputs: Definitions, problem_expects: Definitions,
              model_name: str, model_inputs: Definitions, model_outputs: Definitions) -> None:
    """Check that a model fits a problem before anything runs; raise HandshakeError naming every mismatch.

    1. every key the model reads must be produced by the problem, with compatible shape and dtype;
    2. what the model outputs must be what the problem's loss and statistics expect.
    """
    errors = []
    for key, expected in model_inputs.items():
        provided = problem_outputs.get(key)
        if provided is None or not expected.accepts(provided):
            errors.append(_mismatch(key, f"problem {problem_name}", provided,
                                    f"model {model_name}", expected, "provides"))
    for key, expected in problem_expects.items():
        provided = model_outputs.get(key)
        if provided is None or not expected.accepts(provided):
            errors.append(_mismatch(key, f"model {model_name}", provided,
                                    f"problem {problem_name} (loss and statistics)", expected, "outputs"))
    if errors:
        raise HandshakeError(f"model {model_name} does not fit problem {problem_name}:\n  "
                             + "\n  ".join(errors))


def check_values(who: str, values: Mapping[str, Any], definitions: Definitions) -> None:
    """Check real tensors (the first batch, the first output) against their definitions."""
    errors = []
    for key, definition in definitions.items():
        if key not in values:
            errors.append(f"'{key}': missing (declared as {definition})")
            continue
        why = definition.matches_value(values[key])
        if why:
            errors.append(f"'{key}': {why} (declared as {definition})")
    if errors:
        raise HandshakeError(f"{who} does not match its data definitions:\n  " + "\n  ".join(errors))

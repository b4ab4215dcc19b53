"""What the translation models share: parameters, declared inputs and outputs, decoding at evaluation.

A sequence-to-sequence model reads ``inputs`` [B, S] (source tokens then EOS, PAD = 0) with
``inputs_length`` [B], and, in training only, ``targets`` [B, T] (teacher forcing: the contract of
DESIGN §4, the decoder declares the targets it reads). It returns ``predictions`` [B, T', V] (the
logits of each output step), ``predicted_tokens`` [B, T'] (its output, PAD after EOS: what the
problem scores, so beam search is scored on the beam's output and not on per-step argmaxes) and,
when it has one, ``attention`` [B, T', S] (each output step's weights over the source tokens, what
the problem's ``plot`` draws). In training T' = T; at evaluation the model decodes on its own,
greedily or with a beam, up to ``max_decoding_length`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from miprometheus.data import ANY, DataDefinition
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.models.translation.decoding import Decoded, State, Step, beam_search, cut_after_eos
from miprometheus.params import MAX_SEQUENCE_LENGTH, param


@dataclass(kw_only=True)
class Seq2SeqParams:
    """Parameters every translation model has: the vocabularies (from the problem) and the decoding."""

    input_vocabulary_size: int = param(doc="source tokens, the 4 specials included", from_problem=True, min=4)
    output_vocabulary_size: int = param(doc="target tokens, the 4 specials included", from_problem=True, min=4)
    pad_index: int = param(doc="index of PAD in both vocabularies", from_problem=True)
    sos_index: int = param(doc="index of SOS, the decoder's first input", from_problem=True)
    eos_index: int = param(doc="index of EOS, the end of an output", from_problem=True)
    max_sequence_length: int = param(doc="most tokens of a sentence, EOS included", from_problem=True)
    decoding: Literal["greedy", "beam"] = param("greedy", "decoding at validation and test: greedy or beam search")
    beam_width: int = param(5, "beams kept per sample by beam search", min=1)
    length_penalty: float = param(1.0, "beam search ranks finished outputs by log-probability / length**this "
                                       "(0: raw log-probability)", min=0)
    max_decoding_length: int | None = param(None, "most tokens decoded at evaluation (null: "
                                                  "max_sequence_length + 2)", min=1, max=MAX_SEQUENCE_LENGTH)


class Seq2SeqModel(Model):
    """Base of the translation models: declared inputs and outputs, parameter checks, decoding."""

    has_attention = True

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        for key in ("pad_index", "sos_index", "eos_index"):
            value = getattr(params, key)
            self.check(0 <= value < params.output_vocabulary_size,
                       f"{key} must index the output vocabulary (0..{params.output_vocabulary_size - 1}), "
                       f"got {value}")
        vocabulary = params.output_vocabulary_size
        self.input_definitions = {
            "inputs": DataDefinition((ANY, ANY), "int64", "source token indices then EOS, PAD = 0 [B, S]"),
            "inputs_length": DataDefinition((ANY,), "int64", "tokens of each source, EOS included [B]"),
            "targets": DataDefinition((ANY, ANY), "int64", "target tokens then EOS [B, T]: read in training only "
                                                           "(teacher forcing)"),
        }
        self.output_definitions = {
            "predictions": DataDefinition((ANY, ANY, vocabulary), "float32", "logits of each output step [B, T', V]"),
            "predicted_tokens": DataDefinition((ANY, ANY), "int64", "the output tokens, PAD after EOS [B, T']"),
        }
        if self.has_attention:
            self.output_definitions["attention"] = DataDefinition(
                (ANY, ANY, ANY), "float32", "attention of each output step over the source tokens [B, T', S]")

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"model {self.name}: {message}")

    @property
    def decoding_length(self) -> int:
        p = self.params
        return p.max_decoding_length if p.max_decoding_length is not None else p.max_sequence_length + 2

    def decode(self, step: Step, state: State, batch_size: int) -> Decoded:
        """The output of ``batch_size`` samples decoded on their own (greedy or beam, as configured)."""
        p = self.params
        width = p.beam_width if p.decoding == "beam" else 1
        return beam_search(step, state, batch_size, p.sos_index, p.eos_index, p.pad_index, self.decoding_length,
                           beam_width=width, length_penalty=p.length_penalty if width > 1 else 0.0)

    def outputs(self, logits: torch.Tensor, tokens: torch.Tensor, attention: torch.Tensor | None) -> dict[str, Any]:
        """The forward's dict (the problem's ``plot`` draws the attention with the words, so the model keeps
        nothing in ``internals``)."""
        result: dict[str, Any] = {"predictions": logits, "predicted_tokens": tokens}
        if self.has_attention:
            assert attention is not None
            result["attention"] = attention
        return result

    def teacher_forced_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """Output tokens of a teacher-forced pass: each step's argmax, PAD after the first EOS."""
        return cut_after_eos(logits.argmax(dim=-1), self.params.eos_index, self.params.pad_index)

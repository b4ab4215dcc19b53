"""Greedy decoding and beam search for sequence-to-sequence models, batched, over one ``step`` function.

A model describes one decoding step as ``step(tokens, state) -> (logits, state, attention)``: the
previous output token of each row ``[N]``, the decoder's state (a dict of tensors, batch first:
row ``n`` of every tensor belongs to row ``n`` of ``tokens``) → the logits of the next token
``[N, V]``, the new state and the attention over the source ``[N, S]`` (or None). Both decoders
start every row from SOS, stop a row at its EOS (PAD after it, zero logits and attention) and stop
altogether when every row has stopped or after ``max_length`` tokens. Beam search keeps the
``beam_width`` best partial outputs of each sample by their summed log-probability and returns the
finished one with the best length-normalised score; with a width of 1 it is greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

State = dict[str, torch.Tensor]
Step = Callable[[torch.Tensor, State], tuple[torch.Tensor, State, "torch.Tensor | None"]]


@dataclass
class Decoded:
    """What a decoder returns: per sample ``tokens`` [B, T] (PAD after EOS), the ``logits`` [B, T, V] of each
    emitted token (zero after EOS), ``attention`` [B, T, S] (zero after EOS; None when the model gives none) and
    ``scores`` [B], the summed log-probability of each output (EOS included)."""

    tokens: torch.Tensor
    logits: torch.Tensor
    attention: torch.Tensor | None
    scores: torch.Tensor


def select_rows(state: State, rows: torch.Tensor) -> State:
    """The state of the rows ``rows`` (beam search reorders and repeats rows with it)."""
    return {key: value.index_select(0, rows) for key, value in state.items()}


def cut_after_eos(tokens: torch.Tensor, eos_index: int, pad_index: int) -> torch.Tensor:
    """``tokens`` [B, T] with PAD in place of everything after each row's first EOS."""
    is_eos = (tokens == eos_index).long()
    after = (is_eos.cumsum(dim=1) - is_eos) > 0
    return tokens.masked_fill(after, pad_index)


def greedy_decode(step: Step, state: State, batch_size: int, sos_index: int, eos_index: int, pad_index: int,
                  max_length: int) -> Decoded:
    """The most probable token at every step, for ``batch_size`` rows, until EOS or ``max_length`` tokens."""
    return beam_search(step, state, batch_size, sos_index, eos_index, pad_index, max_length, beam_width=1,
                       length_penalty=0.0)


def beam_search(step: Step, state: State, batch_size: int, sos_index: int, eos_index: int, pad_index: int,
                max_length: int, beam_width: int = 5, length_penalty: float = 1.0) -> Decoded:
    """Beam search of width ``beam_width`` per sample; the returned output maximises score / length**penalty.

    Every sample holds ``beam_width`` rows (beams). A finished beam (it emitted EOS) extends only with
    PAD at no cost, so it keeps its score and its place while the others grow; at the first step only
    the first beam of each sample is live, so the beams do not start as copies of one another.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    k, rows = beam_width, batch_size * beam_width
    device = next(iter(state.values())).device
    state = select_rows(state, torch.arange(batch_size, device=device).repeat_interleave(k))
    scores = torch.full((batch_size, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    scores = scores.view(rows)
    tokens = torch.full((rows,), sos_index, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    history: list[torch.Tensor] = []            # tokens of each step [rows]
    logit_history: list[torch.Tensor] = []      # logits of each step [rows, V]
    attention_history: list[torch.Tensor] = []  # attention of each step [rows, S]
    offsets = (torch.arange(batch_size, device=device) * k).repeat_interleave(k)
    for _ in range(max_length):
        logits, state, attention = step(tokens, state)
        vocabulary = logits.shape[-1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        # a finished beam goes on with PAD at log-probability 0 and nothing else
        stay = torch.full_like(log_probs, float("-inf"))
        stay[:, pad_index] = 0.0
        log_probs = torch.where(finished.unsqueeze(1), stay, log_probs)
        candidates = (scores.unsqueeze(1) + log_probs).view(batch_size, k * vocabulary)
        best, index = candidates.topk(k, dim=1)                      # [B, k]
        source_beam = (index // vocabulary).view(rows) + offsets      # the row each new beam extends
        tokens = (index % vocabulary).view(rows)
        scores = best.view(rows)
        was_finished = finished.index_select(0, source_beam)
        kept_logits = logits.index_select(0, source_beam).masked_fill(was_finished.unsqueeze(1), 0.0)
        history = [h.index_select(0, source_beam) for h in history] + [tokens]
        logit_history = [h.index_select(0, source_beam) for h in logit_history] + [kept_logits]
        if attention is not None:
            kept_attention = attention.index_select(0, source_beam).masked_fill(was_finished.unsqueeze(1), 0.0)
            attention_history = [h.index_select(0, source_beam) for h in attention_history] + [kept_attention]
        lengths = lengths.index_select(0, source_beam) + (~was_finished).long()
        finished = was_finished | (tokens == eos_index)
        state = select_rows(state, source_beam)
        if bool(finished.all()):
            break
    normalised = scores / lengths.clamp(min=1).float().pow(length_penalty)
    choice = normalised.view(batch_size, k).argmax(dim=1) + torch.arange(batch_size, device=device) * k
    out_tokens = torch.stack(history, dim=1).index_select(0, choice)
    out_logits = torch.stack(logit_history, dim=1).index_select(0, choice)
    out_attention = (torch.stack(attention_history, dim=1).index_select(0, choice) if attention_history else None)
    return Decoded(tokens=out_tokens, logits=out_logits, attention=out_attention,
                   scores=scores.index_select(0, choice))

"""TransformerEncoderDecoder: a small ``torch.nn.Transformer`` translator, the modern baseline (Vaswani et al. 2017).

Token embeddings scaled by sqrt(d_model) plus sinusoidal positions (Vaswani et al. 2017), PAD
masked as keys in the encoder, the decoder's self-attention and the cross-attention, a causal mask
in the decoder. Training is teacher-forced in one parallel pass (the decoder reads SOS then the
targets shifted right); at evaluation it decodes on its own, greedily or with a beam, recomputing
the decoder over the prefix at each step (sentences are short). ``attention`` is the last decoder
layer's cross-attention, averaged over the heads, read with a hook that asks that layer's
``nn.MultiheadAttention`` for its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from miprometheus.models.translation.decoding import State
from miprometheus.models.translation.seq2seq import Seq2SeqModel, Seq2SeqParams
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


def sinusoidal_positions(length: int, size: int) -> torch.Tensor:
    """[length, size]: sin on even features, cos on odd ones, wavelengths from 2π to 10000·2π."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(10000.0) / size))
    table = torch.zeros(length, size)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, :size // 2]
    return table


@register_model
class TransformerEncoderDecoder(Seq2SeqModel):
    """Transformer encoder-decoder (torch.nn.Transformer, batch first, post-norm), greedy or beam decoding."""

    @dataclass(kw_only=True)
    class Params(Seq2SeqParams):
        """Parameters of the Transformer encoder-decoder."""

        d_model: int = param(128, "size of the embeddings and of every layer", min=1)
        nhead: int = param(4, "attention heads (d_model must be a multiple)", min=1)
        num_encoder_layers: int = param(2, "encoder layers", min=1)
        num_decoder_layers: int = param(2, "decoder layers", min=1)
        dim_feedforward: int = param(256, "units of each layer's feed-forward block", min=1, max=MAX_UNITS)
        dropout: float = param(0.1, "dropout in every layer and on the embeddings (training only)", min=0, max=1)

    def __init__(self, params: TransformerEncoderDecoder.Params) -> None:
        super().__init__(params)
        self.check(params.d_model % params.nhead == 0,
                   f"d_model ({params.d_model}) must be a multiple of nhead ({params.nhead})")
        self.check(0.0 <= params.dropout < 1.0, f"dropout must be in [0, 1), got {params.dropout}")
        d = params.d_model
        self.source_embedding = nn.Embedding(params.input_vocabulary_size, d, padding_idx=params.pad_index)
        self.target_embedding = nn.Embedding(params.output_vocabulary_size, d, padding_idx=params.pad_index)
        self.dropout = nn.Dropout(params.dropout)
        self.transformer = nn.Transformer(d_model=d, nhead=params.nhead, num_encoder_layers=params.num_encoder_layers,
                                          num_decoder_layers=params.num_decoder_layers,
                                          dim_feedforward=params.dim_feedforward, dropout=params.dropout,
                                          batch_first=True)
        # no nested-tensor fast path at evaluation: a prototype API that warns, for sentences of a dozen tokens
        self.transformer.encoder.use_nested_tensor = False
        self.output = nn.Linear(d, params.output_vocabulary_size)
        # the longest source (with EOS) and the longest decoding, with room to spare
        self.register_buffer("positions", sinusoidal_positions(max(params.max_sequence_length, self.decoding_length)
                                                               + 8, d), persistent=False)
        self._cross_attention: torch.Tensor | None = None
        cross = self.transformer.decoder.layers[-1].multihead_attn
        cross.register_forward_pre_hook(self._ask_for_weights, with_kwargs=True)
        cross.register_forward_hook(self._keep_weights)

    # --- reading the last layer's cross-attention ---------------------------------------------------------------
    @staticmethod
    def _ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": True}

    def _keep_weights(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._cross_attention = output[1]

    # --- parts --------------------------------------------------------------------------------------------------
    def embed(self, embedding: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.positions.shape[0]:
            self.positions = sinusoidal_positions(2 * length, self.params.d_model).to(self.positions.device)
        scaled = embedding(tokens) * math.sqrt(self.params.d_model)
        return self.dropout(scaled + self.positions[:length])

    def encode(self, inputs: torch.Tensor) -> State:
        padding = inputs == self.params.pad_index
        memory = self.transformer.encoder(self.embed(self.source_embedding, inputs), src_key_padding_mask=padding)
        return {"memory": memory, "padding": padding}

    def decode_prefix(self, prefix: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, T, V] and cross-attention [N, T, S] after each token of ``prefix`` [N, T]."""
        length = prefix.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=prefix.device), diagonal=1)
        hidden = self.transformer.decoder(self.embed(self.target_embedding, prefix), state["memory"],
                                          tgt_mask=causal, tgt_key_padding_mask=prefix == self.params.pad_index,
                                          memory_key_padding_mask=state["padding"], tgt_is_causal=True)
        attention = self._cross_attention
        assert attention is not None
        self._cross_attention = None
        return self.output(hidden), attention

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Logits [N, V] of the word after the prefix so far and ``tokens`` [N], the attention [N, S]."""
        prefix = torch.cat([state["prefix"], tokens.unsqueeze(1)], dim=1) if "prefix" in state else tokens[:, None]
        logits, attention = self.decode_prefix(prefix, state)
        return logits[:, -1], {**state, "prefix": prefix}, attention[:, -1]

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training: one teacher-forced parallel pass over SOS + targets[:-1]. Evaluation: decoded on its own."""
        p = self.params
        inputs = batch["inputs"]
        state = self.encode(inputs)
        if not self.training:
            decoded = self.decode(self.step, state, inputs.shape[0])
            return self.outputs(decoded.logits, decoded.tokens, decoded.attention)
        targets = batch["targets"]
        start = torch.full((targets.shape[0], 1), p.sos_index, dtype=targets.dtype, device=targets.device)
        logits, attention = self.decode_prefix(torch.cat([start, targets[:, :-1]], dim=1), state)
        return self.outputs(logits, self.teacher_forced_tokens(logits), attention)

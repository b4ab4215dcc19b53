"""AttentionEncoderDecoder: a recurrent encoder-decoder with Bahdanau or Luong attention
(Bahdanau, Cho, Bengio 2015; Luong, Pham, Manning 2015).

Encoder: embedding → dropout → a (bidirectional) GRU or LSTM over the packed source, so PAD never
enters the states; its last states, both directions concatenated, pass a bridge (linear + tanh) to
become the decoder's first state. Decoder, one token at a time:

- ``bahdanau`` (additive; Bahdanau et al. 2015): the previous decoder state ``s`` queries the encoder
  outputs ``h_j``, ``e_j = v·tanh(W s + U h_j)``; the context ``c = Σ a_j h_j`` enters the recurrent
  cell with the previous word's embedding; logits from ``[s'; c; embedding]``.
- ``luong`` (general; Luong et al. 2015): the cell runs on the previous word's embedding and the last
  attentional vector (input feeding); its new state queries the encoder, ``e_j = s'·W h_j``; the
  attentional vector ``tanh(W_c [c; s'])`` gives the logits.

Scores at PAD positions are masked before the softmax, so their attention is exactly 0. In training,
each step's next input is the target word with probability ``teacher_forcing_ratio`` (drawn per
sample and step), else the model's own argmax; at evaluation it decodes alone (greedy or beam).
Unlike the original tutorial it batches, masks PAD and does not feed the encoder's padded steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from miprometheus.models.translation.decoding import State
from miprometheus.models.translation.seq2seq import Seq2SeqModel, Seq2SeqParams
from miprometheus.params import MAX_UNITS, param
from miprometheus.registry import register_model


class AdditiveAttention(nn.Module):
    """Bahdanau's score ``v·tanh(W q + U k)``; the keys' projection ``U k`` is computed once per source."""

    def __init__(self, query_size: int, key_size: int, size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, size, bias=False)
        self.key = nn.Linear(key_size, size)
        self.score = nn.Linear(size, 1, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key(keys)

    def forward(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """Scores [N, S] of ``query`` [N, Q] against the prepared keys [N, S, A]."""
        return self.score(torch.tanh(self.query(query).unsqueeze(1) + prepared)).squeeze(-1)


class GeneralAttention(nn.Module):
    """Luong's "general" score ``q·W k``; ``W k`` is computed once per source."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key(keys)

    def forward(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)


@register_model
class AttentionEncoderDecoder(Seq2SeqModel):
    """Recurrent encoder-decoder with attention: (bi)GRU/LSTM encoder, Bahdanau or Luong attention,
    teacher forcing with a ratio in training, greedy decoding or beam search at evaluation."""

    @dataclass(kw_only=True)
    class Params(Seq2SeqParams):
        """Parameters of the attention encoder-decoder."""

        cell: Literal["gru", "lstm"] = param("gru", "recurrent cell of the encoder and the decoder")
        embedding_size: int = param(128, "size of the word embeddings (source and target)", min=1, max=MAX_UNITS)
        hidden_size: int = param(256, "units of each recurrent layer (per direction in the encoder)",
                                 min=1, max=MAX_UNITS)
        num_layers: int = param(1, "stacked recurrent layers of the encoder and of the decoder", min=1)
        bidirectional: bool = param(True, "read the source in both directions")
        attention: Literal["bahdanau", "luong"] = param("bahdanau", "additive (Bahdanau) or general (Luong)")
        attention_size: int = param(256, "size of the additive attention's hidden layer (bahdanau)",
                                    min=1, max=MAX_UNITS)
        dropout: float = param(0.1, "dropout on the embeddings and before the output layer (training only)",
                               min=0, max=1)
        teacher_forcing_ratio: float = param(1.0, "probability that a training step is fed the target word "
                                                  "rather than the model's own")

    def __init__(self, params: AttentionEncoderDecoder.Params) -> None:
        super().__init__(params)
        self.check(0.0 <= params.dropout < 1.0, f"dropout must be in [0, 1), got {params.dropout}")
        self.check(0.0 <= params.teacher_forcing_ratio <= 1.0,
                   f"teacher_forcing_ratio must be in [0, 1], got {params.teacher_forcing_ratio}")
        rnn = nn.GRU if params.cell == "gru" else nn.LSTM
        e, h, layers = params.embedding_size, params.hidden_size, params.num_layers
        directions = 2 if params.bidirectional else 1
        between = params.dropout if layers > 1 else 0.0
        self.source_embedding = nn.Embedding(params.input_vocabulary_size, e, padding_idx=params.pad_index)
        self.target_embedding = nn.Embedding(params.output_vocabulary_size, e, padding_idx=params.pad_index)
        self.dropout = nn.Dropout(params.dropout)
        self.encoder = rnn(e, h, num_layers=layers, batch_first=True, bidirectional=params.bidirectional,
                           dropout=between)
        key_size = directions * h
        self.bridge = nn.Linear(key_size, h)
        self.cell_bridge = nn.Linear(key_size, h) if params.cell == "lstm" else None
        if params.attention == "bahdanau":
            self.attend = AdditiveAttention(h, key_size, params.attention_size)
            self.decoder = rnn(e + key_size, h, num_layers=layers, batch_first=True, dropout=between)
            self.output = nn.Linear(h + key_size + e, params.output_vocabulary_size)
            self.combine = None
        else:
            self.attend = GeneralAttention(h, key_size)
            self.decoder = rnn(e + h, h, num_layers=layers, batch_first=True, dropout=between)
            self.combine = nn.Linear(key_size + h, h)
            self.output = nn.Linear(h, params.output_vocabulary_size)

    # --- encoder ------------------------------------------------------------------------------------------------
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> State:
        """The decoder's first state and what attention needs, batch first (beam search reorders rows)."""
        p = self.params
        embedded = self.dropout(self.source_embedding(inputs))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        outputs, last = self.encoder(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])
        directions = 2 if p.bidirectional else 1

        def bridged(final: torch.Tensor, bridge: nn.Module) -> torch.Tensor:
            # [layers * directions, B, H] → [B, layers, directions * H] → [B, layers, H]
            batch = final.shape[1]
            final = final.view(p.num_layers, directions, batch, p.hidden_size).permute(2, 0, 1, 3)
            return torch.tanh(bridge(final.reshape(batch, p.num_layers, directions * p.hidden_size)))

        state: State = {"keys": keys, "prepared": self.attend.prepare(keys),
                        "mask": inputs != p.pad_index}
        if p.cell == "lstm":
            state["hidden"] = bridged(last[0], self.bridge)
            state["cell"] = bridged(last[1], self.cell_bridge)
        else:
            state["hidden"] = bridged(last, self.bridge)
        if p.attention == "luong":
            state["feed"] = keys.new_zeros(inputs.shape[0], p.hidden_size)
        return state

    # --- one decoding step --------------------------------------------------------------------------------------
    def attention_weights(self, query: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.attend(query, state["prepared"]).masked_fill(~state["mask"], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.unsqueeze(1), state["keys"]).squeeze(1)
        return weights, context

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Logits [N, V] of the next word after ``tokens`` [N], the new state, the attention [N, S]."""
        p = self.params
        embedded = self.dropout(self.target_embedding(tokens))
        hidden = state["hidden"].transpose(0, 1).contiguous()      # [layers, N, H] for the cell
        recurrent = (hidden, state["cell"].transpose(0, 1).contiguous()) if p.cell == "lstm" else hidden
        new_state = dict(state)
        if p.attention == "bahdanau":
            weights, context = self.attention_weights(state["hidden"][:, -1], state)
            output, recurrent = self.decoder(torch.cat([embedded, context], dim=-1).unsqueeze(1), recurrent)
            output = output.squeeze(1)
            logits = self.output(self.dropout(torch.cat([output, context, embedded], dim=-1)))
        else:
            output, recurrent = self.decoder(torch.cat([embedded, state["feed"]], dim=-1).unsqueeze(1), recurrent)
            output = output.squeeze(1)
            weights, context = self.attention_weights(output, state)
            attentional = torch.tanh(self.combine(torch.cat([context, output], dim=-1)))
            new_state["feed"] = attentional
            logits = self.output(self.dropout(attentional))
        if p.cell == "lstm":
            new_state["hidden"], new_state["cell"] = (r.transpose(0, 1) for r in recurrent)
        else:
            new_state["hidden"] = recurrent.transpose(0, 1)
        return logits, new_state, weights

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training: one step per target token, teacher-forced with the configured ratio. Evaluation:
        decoded on its own (``targets`` not read)."""
        p = self.params
        inputs = batch["inputs"]
        state = self.encode(inputs, batch["inputs_length"])
        if not self.training:
            decoded = self.decode(self.step, state, inputs.shape[0])
            return self.outputs(decoded.logits, decoded.tokens, decoded.attention)
        targets = batch["targets"]
        tokens = torch.full((inputs.shape[0],), p.sos_index, dtype=torch.long, device=inputs.device)
        all_logits, all_weights = [], []
        for t in range(targets.shape[1]):
            logits, state, weights = self.step(tokens, state)
            all_logits.append(logits)
            all_weights.append(weights)
            if p.teacher_forcing_ratio >= 1.0:
                tokens = targets[:, t]
            else:
                forced = torch.rand(inputs.shape[0], device=inputs.device) < p.teacher_forcing_ratio
                tokens = torch.where(forced, targets[:, t], logits.argmax(dim=-1).detach())
        logits = torch.stack(all_logits, dim=1)
        return self.outputs(logits, self.teacher_forced_tokens(logits), torch.stack(all_weights, dim=1))

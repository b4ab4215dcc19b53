"""The translation models: declared outputs, decoding (greedy, beam), attention masking, learning a tiny task."""

from __future__ import annotations

import pytest
import torch

from miprometheus.errors import ConfigError
from miprometheus.models.translation.attention_encoder_decoder import AttentionEncoderDecoder
from miprometheus.models.translation.decoding import beam_search, cut_after_eos, greedy_decode
from miprometheus.models.translation.transformer_encoder_decoder import TransformerEncoderDecoder
from miprometheus.workers.components import split_output
from tests.conftest import run_mip

PAD, UNK, SOS, EOS = 0, 1, 2, 3
VOCABULARY = 12
SPECIALS = dict(input_vocabulary_size=VOCABULARY, output_vocabulary_size=VOCABULARY, pad_index=PAD,
                sos_index=SOS, eos_index=EOS, max_sequence_length=6)


def attention_model(**values) -> AttentionEncoderDecoder:
    params = dict(embedding_size=16, hidden_size=24, attention_size=16, dropout=0.0, **SPECIALS)
    params.update(values)
    return AttentionEncoderDecoder(AttentionEncoderDecoder.Params(**params))


def transformer_model(**values) -> TransformerEncoderDecoder:
    params = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                  dropout=0.0, **SPECIALS)
    params.update(values)
    return TransformerEncoderDecoder(TransformerEncoderDecoder.Params(**params))


MODELS = {
    "gru-bahdanau": lambda **v: attention_model(cell="gru", attention="bahdanau", **v),
    "lstm-luong": lambda **v: attention_model(cell="lstm", attention="luong", bidirectional=False,
                                              num_layers=2, **v),
    "lstm-bahdanau-bi": lambda **v: attention_model(cell="lstm", attention="bahdanau", **v),
    "transformer": transformer_model,
}


def copy_batch() -> dict[str, torch.Tensor]:
    """Four sources of different lengths (then EOS, PAD-padded); the target is the source itself."""
    rows = [[4, 5, 6, EOS], [7, 8, EOS, PAD], [9, EOS, PAD, PAD], [10, 11, 4, EOS]]
    inputs = torch.tensor(rows)
    lengths = (inputs != PAD).sum(dim=1)
    return {"inputs": inputs, "inputs_length": lengths, "targets": inputs.clone()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_outputs_follow_the_targets_and_are_declared(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    batch = copy_batch()
    predictions, extras = split_output(model, model(batch))
    assert predictions.shape == (4, 4, VOCABULARY) and predictions.dtype == torch.float32
    assert set(extras) == set(model.output_definitions) - {"predictions"}
    assert extras["predicted_tokens"].shape == (4, 4) and extras["predicted_tokens"].dtype == torch.int64
    assert extras["attention"].shape == (4, 4, 4)
    torch.testing.assert_close(extras["attention"].sum(-1), torch.ones(4, 4))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_evaluation_decodes_without_the_targets_and_never_attends_to_pad(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    model.eval()
    batch = copy_batch()
    del batch["targets"]
    with torch.no_grad():
        out = model(batch)
    tokens, attention = out["predicted_tokens"], out["attention"]
    assert tokens.shape[1] <= model.decoding_length == 8
    assert out["predictions"].shape[:2] == tokens.shape and attention.shape[:2] == tokens.shape
    assert attention.shape[2] == 4
    assert torch.equal(cut_after_eos(tokens, EOS, PAD), tokens)          # PAD after every EOS
    pad = batch["inputs"] == PAD
    assert float(attention.masked_select(pad.unsqueeze(1).expand_as(attention)).abs().max()) == 0.0
    after_eos = tokens == PAD
    assert float(out["predictions"][after_eos].abs().sum()) == 0.0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_beam_of_one_is_greedy_decoding(name):
    torch.manual_seed(1)
    model = MODELS[name]()
    model.eval()
    batch = copy_batch()
    with torch.no_grad():
        greedy = model(batch)
        model.params.decoding, model.params.beam_width = "beam", 1
        beam = model(batch)
    assert torch.equal(greedy["predicted_tokens"], beam["predicted_tokens"])
    torch.testing.assert_close(greedy["predictions"], beam["predictions"])


def table_step(table: dict[tuple[int, ...], list[float]], vocabulary: int):
    """A step function whose next-token probabilities depend on the whole prefix (kept in the state)."""

    def step(tokens, state):
        prefix = torch.cat([state["prefix"], tokens[:, None]], dim=1)
        logits = []
        for row in prefix.tolist():
            probabilities = table.get(tuple(row[1:]))
            if probabilities is None:                      # any other prefix: EOS for sure
                probabilities = [1.0 if i == EOS else 0.0 for i in range(vocabulary)]
            logits.append(torch.tensor(probabilities).clamp(min=1e-9).log())
        return torch.stack(logits), {"prefix": prefix}, None

    return step


def test_beam_search_finds_the_output_greedy_decoding_misses():
    # V = 6: PAD UNK SOS EOS a(4) b(5). Greedy takes "a" (0.6) then anything at 0.35 at best; "b" (0.4) then EOS at
    # 0.95 scores 0.38 > 0.6 * 0.35 = 0.21.
    table = {
        (): [0, 0, 0, 0, 0.6, 0.4],
        (4,): [0, 0, 0, 0.35, 0.33, 0.32],
        (5,): [0, 0, 0, 0.95, 0.03, 0.02],
    }
    start = {"prefix": torch.zeros((2, 0), dtype=torch.long)}
    step = table_step(table, 6)
    greedy = greedy_decode(step, start, 2, SOS, EOS, PAD, max_length=2)
    beam = beam_search(step, start, 2, SOS, EOS, PAD, max_length=2, beam_width=2, length_penalty=0.0)
    assert greedy.tokens.tolist() == [[4, 3]] * 2
    assert beam.tokens.tolist() == [[5, 3]] * 2
    assert torch.all(beam.scores > greedy.scores)
    torch.testing.assert_close(beam.scores, torch.full((2,), 0.4 * 0.95).log())
    assert beam.attention is None


def test_beam_search_pads_finished_outputs_and_the_length_penalty_prefers_longer_ones():
    # "EOS" at once (0.5) against "a a EOS" (0.5 * 0.9 * 0.9 = 0.405: less in all, more per token)
    table = {(): [0, 0, 0, 0.5, 0.5, 0], (4,): [0, 0, 0, 0.1, 0.9, 0], (4, 4): [0, 0, 0, 0.9, 0.1, 0]}
    start = {"prefix": torch.zeros((1, 0), dtype=torch.long)}
    step = table_step(table, 6)
    raw = beam_search(step, start, 1, SOS, EOS, PAD, max_length=4, beam_width=3, length_penalty=0.0)
    normalised = beam_search(step, start, 1, SOS, EOS, PAD, max_length=4, beam_width=3, length_penalty=1.0)
    assert raw.tokens[0, 0] == EOS and set(raw.tokens[0, 1:].tolist()) == {PAD}
    assert normalised.tokens[0, :3].tolist() == [4, 4, EOS] and set(normalised.tokens[0, 3:].tolist()) <= {PAD}
    assert float(raw.logits[0, 1:].abs().max()) == 0.0           # nothing emitted after EOS
    torch.testing.assert_close(normalised.scores, torch.tensor([0.405]).log())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gru-bahdanau", "lstm-luong", "transformer"])
def test_each_model_learns_to_copy_a_small_batch_and_decodes_it_back(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    batch = copy_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        model.train()
        predictions, _ = split_output(model, model(batch))
        loss = torch.nn.functional.cross_entropy(predictions.transpose(1, 2), batch["targets"], ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.05
    model.eval()
    for decoding in ("greedy", "beam"):
        model.params.decoding = decoding
        with torch.no_grad():
            tokens = model(batch)["predicted_tokens"]
        assert torch.equal(tokens[:, :4], batch["targets"]), decoding


def test_teacher_forcing_ratio_zero_feeds_the_models_own_words():
    torch.manual_seed(0)
    model = attention_model(teacher_forcing_ratio=0.0)
    model.train()
    batch = copy_batch()
    first = model(batch)["predictions"]
    batch["targets"] = torch.full_like(batch["targets"], 5)   # other targets, same length
    second = model(batch)["predictions"]
    torch.testing.assert_close(first, second)                 # the targets were never fed
    forced = attention_model(teacher_forcing_ratio=1.0)
    forced.load_state_dict(model.state_dict())
    forced.train()
    assert not torch.allclose(forced(batch)["predictions"], forced(copy_batch())["predictions"])


@pytest.mark.parametrize("make, values, message", [
    (attention_model, {"hidden_size": 0}, "hidden_size must be between 1 and 16384"),
    (attention_model, {"teacher_forcing_ratio": 1.5}, "teacher_forcing_ratio must be in"),
    (attention_model, {"beam_width": 0}, "beam_width must be at least 1"),
    (attention_model, {"eos_index": 40}, "eos_index must index the output vocabulary"),
    (transformer_model, {"d_model": 10, "nhead": 3}, r"d_model \(10\) must be a multiple of nhead \(3\)"),
    (transformer_model, {"max_decoding_length": 0}, "max_decoding_length must be between 1 and 65536"),
])
def test_bad_parameters_are_config_errors_naming_them(make, values, message):
    with pytest.raises(ConfigError, match=message):
        make(**values)


TINY = """
training:
  problem: {{name: TranslationAnki, data_folder: {data}, language: syn, synthetic: true, batch_size: 32,
            max_sequence_length: 10}}
  optimizer: {{name: Adam, lr: 0.003}}
  terminal_conditions: {{epoch_limit: 1}}
  seed: 3
validation:
  problem: {{name: TranslationAnki, data_folder: {data}, language: syn, split: validation, batch_size: 100}}
  interval: 1000
testing:
  problem: {{name: TranslationAnki, data_folder: {data}, language: syn_heldout, split: all, batch_size: 100}}
  settings:
    greedy: {{}}
    beam: {{model_overrides: {{decoding: beam, beam_width: 3}}}}
model: {model}
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["{name: AttentionEncoderDecoder, embedding_size: 16, hidden_size: 32, "
                                   "attention_size: 16, teacher_forcing_ratio: 0.5}",
                                   "{name: TransformerEncoderDecoder, d_model: 32, nhead: 2, num_encoder_layers: 1, "
                                   "num_decoder_layers: 1, dim_feedforward: 32}"])
def test_train_and_test_on_the_synthetic_corpus_greedy_and_beam(tmp_path, model):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(data=tmp_path / "data", model=model))
    result = run_mip("train", config, "--test", "--expdir", tmp_path / "runs", "--no-progress", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    tests = list((tmp_path / "runs").glob("TranslationAnki/*/*/test_*"))
    assert len(tests) == 1
    for setting in ("greedy", "beam"):
        samples = (tests[0] / setting / "samples.txt").read_text()
        assert samples.count("reference: ") == 20 and "output:" in samples
        statistics = (tests[0] / setting / "testing_set_agg_statistics.csv").read_text()
        assert "bleu" in statistics
    beam_config = (tests[0] / "beam" / "testing_configuration.yaml").read_text()
    assert "beam_width: 3" in beam_config


def test_the_real_corpus_settings_drop_the_synthetic_tests():
    # attention_encoder_decoder_anki.yaml starts from the synthetic corpus; default_anki_fra.yaml replaces its
    # three tests (heldout_greedy: false, ...) by its own
    from pathlib import Path

    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate

    configs = Path(__file__).resolve().parents[3] / "configs" / "translation"
    spec = validate(load_config([configs / "attention_encoder_decoder_anki.yaml", configs / "default_anki_fra.yaml"]))
    assert set(spec.test_settings) == {"greedy", "beam"}
    assert spec.test_settings["beam"].section.model_overrides == {"decoding": "beam", "beam_width": 5}
    assert all(s.problem_params.language == "fra" and not s.problem_params.synthetic
               for s in spec.test_settings.values())
    assert "heldout_beam" not in spec.effective_tree()["testing"]["settings"]


"""CNN_LSTM, SAN and RelationalNetwork: shapes on pixels and features, question padding, SAN's hops, the RN's pairs
against a naive reference, parameter counts, real learning, plots."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from miprometheus import catalogue
from miprometheus.data import check_values
from miprometheus.errors import ConfigError
from miprometheus.models.vqa.cnn_lstm import CNN_LSTM
from miprometheus.models.vqa.relational_network import RelationalNetwork, coordinate_grid
from miprometheus.models.vqa.san import SAN

MODELS = [CNN_LSTM, SAN, RelationalNetwork]
VOCABULARY, ANSWERS = 20, 10


def build(cls: type, size: int = 64, channels: int = 3, height: int | None = None, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(cls.Params(question_vocabulary_size=VOCABULARY, answer_vocabulary_size=ANSWERS, num_channels=channels,
                          height=height or size, width=size, **overrides))


def make_batch(batch_size: int = 4, size: int = 64, channels: int = 3, height: int | None = None,
               seed: int = 1) -> dict:
    """Random images and questions of 2-3 tokens (PAD = 0 after the end), as a VQA problem's batch."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 4, (batch_size,), generator=g)
    lengths[0] = 3  # T = 3 = the longest question
    questions = torch.randint(2, VOCABULARY, (batch_size, 3), generator=g) * (torch.arange(3) < lengths[:, None])
    return {"images": torch.rand(batch_size, channels, height or size, size, generator=g), "questions": questions,
            "questions_length": lengths, "answers": torch.randint(0, ANSWERS, (batch_size,), generator=g),
            "questions_text": [f"question {i}" for i in range(batch_size)],
            "answers_text": [f"answer {i}" for i in range(batch_size)]}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- shapes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_raw_pixels_give_answer_logits_that_match_the_definitions(cls):
    model = build(cls)
    assert set(model.input_definitions) == {"images", "questions", "questions_length"}
    batch = make_batch()
    check_values("batch", batch, model.input_definitions)
    out = model(batch)
    assert out.shape == (4, ANSWERS)
    check_values(cls.__name__, {"predictions": out}, model.output_definitions)
    model.eval()
    torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)  # dropout is off in eval mode


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_pre_extracted_features_keep_their_grid(cls):
    # CLEVR's [B, 1024, 14, 14] in miniature: 16 maps of 4 x 4, projected cell by cell (1x1 convolution).
    model = build(cls, size=4, channels=16, image_encoder="features", conv_filters=8)
    assert model.image_encoder.grid == (4, 4)
    model.recording = True
    out = model(make_batch(size=4, channels=16))
    assert out.shape == (4, ANSWERS)
    if cls is SAN:
        assert model.internals["attention"].shape == (4, 2, 16)  # 2 hops over 16 regions
    if cls is RelationalNetwork:
        assert model.internals["pair_norms"].shape == (4, 16, 16)  # every ordered pair of the 16 cells


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_extra_pad_columns_do_not_change_the_answer(cls):
    model = build(cls).eval()
    batch = make_batch()
    padded = dict(batch, questions=F.pad(batch["questions"], (0, 4)))  # T = 3 -> 7, all PAD
    torch.testing.assert_close(model(padded), model(batch), rtol=1e-5, atol=1e-6)
    # ...but the question matters: another last word changes the answer logits.
    changed = dict(batch, questions=batch["questions"].clone())
    changed["questions"][0, 2] = (changed["questions"][0, 2] - 1) % (VOCABULARY - 2) + 2  # the next word, 2..V-1
    assert not torch.allclose(model(changed)[0], model(batch)[0])


# --- parameters -----------------------------------------------------------------------------------------
def test_parameter_counts_follow_from_the_layers():
    conv = 16_488  # Santoro et al. 2017's CNN, 24 filters
    lstm = {64: 4 * 64 * (32 + 64) + 8 * 64, 128: 4 * 128 * (32 + 128) + 8 * 128}  # 1 layer, 32-d embeddings
    embedding = VOCABULARY * 32
    classifier = {n: n * 256 + 256 + 256 * 256 + 256 + 256 * ANSWERS + ANSWERS for n in (24 * 16 + 64, 24, 256)}
    assert n_params(build(CNN_LSTM)) == conv + embedding + lstm[64] + classifier[24 * 16 + 64] == 225_522
    hop = 24 * 128 + (24 * 128 + 128) + 128  # W_I, W_Q and b_A, w_P
    assert n_params(build(SAN)) == conv + embedding + lstm[64] + (64 * 24 + 24) + 2 * hop + classifier[24] == 131_338
    # The original RN has 364,914 parameters with Sort-of-CLEVR's 13-bit question fed to g_theta;
    # here g_theta's first layer reads a 128-unit LSTM state instead, and the LSTM and embeddings are added.
    rn = n_params(build(RelationalNetwork, size=128))
    assert rn == 364_914 + (128 - 13) * 256 + lstm[128] + embedding == 477_938
    assert n_params(build(RelationalNetwork, size=64)) == rn  # convolutional: any image size
    assert n_params(build(SAN, num_hops=3)) == 131_338 + hop


@pytest.mark.parametrize("bad, message", [
    ({"image_encoder": "resnet"}, "image_encoder must be one of conv4, features"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"conv_filters": 0}, "conv_filters must be at least 1, got 0"),
])
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_bad_parameters_are_config_errors_naming_the_model(cls, bad, message):
    with pytest.raises(ConfigError, match=f"model {cls.__name__}: {message}"):
        build(cls, **bad)


def test_bad_hops_and_g_theta_are_config_errors():
    with pytest.raises(ConfigError, match="model SAN: num_hops must be at least 1"):
        build(SAN, num_hops=0)
    with pytest.raises(ConfigError, match="model RelationalNetwork: g_theta_layers must be at least 1"):
        build(RelationalNetwork, g_theta_layers=0)


def test_mip_list_shows_the_inherited_and_own_parameters():
    san = {p.name: p for p in catalogue.describe("models", "SAN").params}
    assert {"image_encoder", "question_hidden_size", "attention_size", "num_hops"} <= set(san)
    rn = {p.name: p for p in catalogue.describe("models", "RelationalNetwork").params}
    assert rn["question_hidden_size"].default == "128" and "g_theta_units" in rn
    assert "from the problem" in rn["question_vocabulary_size"].doc


# --- SAN ------------------------------------------------------------------------------------------------
def test_san_hops_have_their_own_weights_and_hop_two_attends_with_the_refined_query():
    model = build(SAN).double().eval()
    first, second = model.hops
    assert not {p.data_ptr() for p in first.parameters()} & {p.data_ptr() for p in second.parameters()}
    # Give hop 2 hop 1's weights: had it been fed v_Q again (the original's bug), it would repeat hop 1's map.
    second.load_state_dict(first.state_dict())
    batch = make_batch()
    batch["images"] = batch["images"].double()  # float64: the maps of a fresh model differ by ~1e-6
    model.recording = True
    model(batch)
    attention = model.internals["attention"]  # [B, 2, m]
    with torch.no_grad():  # both hops recomputed by hand
        regions = model.image_encoder(batch["images"]).flatten(2).transpose(1, 2)
        v_q = model.question_projection(model.question_encoder(batch["questions"], batch["questions_length"])[1])
        u1, p1 = first(regions, v_q)
        _, p2 = second(regions, u1)
    torch.testing.assert_close(attention[:, 0], p1, rtol=0, atol=1e-12)
    torch.testing.assert_close(attention[:, 1], p2, rtol=0, atol=1e-12)  # hop 2 attends with u^1 ...
    assert (attention[:, 1] - attention[:, 0]).abs().max() > 1e-7  # ... not with v_Q (which gives hop 1's map)
    torch.testing.assert_close(attention.sum(dim=2), torch.ones(4, 2, dtype=torch.double))  # softmax over regions


# --- Relational Network -------------------------------------------------------------------------------------
def test_coordinates_run_along_columns_for_x_and_rows_for_y():
    grid = coordinate_grid(2, 3)  # 2 rows, 3 columns, row by row
    torch.testing.assert_close(grid[:, 0], torch.tensor([-0.5, 0.0, 0.5, -0.5, 0.0, 0.5]))
    torch.testing.assert_close(grid[:, 1], torch.tensor([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]))


def test_relational_network_equals_a_naive_sum_over_concatenated_pairs():
    # A non-square grid of feature cells (2 x 3), so a transposed object order or coordinate would show.
    model = build(RelationalNetwork, size=3, height=2, channels=5, image_encoder="features", conv_filters=4,
                  g_theta_units=16, classifier_hidden=8, question_hidden_size=6).double().eval()
    batch = make_batch(batch_size=3, size=3, height=2, channels=5)
    batch["images"] = batch["images"].double()
    with torch.no_grad():
        expected = []
        for b in range(3):
            cells = model.image_encoder(batch["images"][b:b + 1])[0]  # [k, 2, 3]
            objects = [torch.cat([cells[:, r, c], torch.tensor([-0.5 + 0.5 * c, -0.5 + r], dtype=torch.double)])
                       for r in range(2) for c in range(3)]
            _, q = model.question_encoder(batch["questions"][b:b + 1], batch["questions_length"][b:b + 1])
            total = 0
            for o_i in objects:
                for o_j in objects:  # every ordered pair, (i, i) included
                    g = torch.cat([o_i, o_j, q[0]])
                    for layer in model.g_theta:
                        g = torch.relu(layer(g))
                    total = total + g
            expected.append(model.classifier(total))
        torch.testing.assert_close(model(batch), torch.stack(expected), rtol=0, atol=1e-5)


# --- learning ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_overfits_a_batch_whose_answers_need_both_image_and_question(cls):
    # 4 images x 4 questions, a random answer for each pair: neither the image nor the question alone tells it.
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([2, 3, 3, 2]).repeat(4)
    questions = torch.randint(2, VOCABULARY, (4, 3), generator=g).repeat(4, 1) * (torch.arange(3) < lengths[:, None])
    batch = {"images": torch.rand(4, 3, 32, 32, generator=g).repeat_interleave(4, dim=0), "questions": questions,
             "questions_length": lengths}
    answers = torch.randint(0, ANSWERS, (16,), generator=g)
    model = build(cls, size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        start = F.cross_entropy(model.eval()(batch), answers).item()
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(batch), answers).backward()
        optimizer.step()
    with torch.no_grad():
        logits = model.eval()(batch)
    assert F.cross_entropy(logits, answers).item() < 0.1 * start
    assert (logits.argmax(dim=1) == answers).float().mean() >= 0.9


# --- visualisation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder", ["conv4", "features"])
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_plot_draws_a_figure_from_what_was_recorded(cls, encoder):
    size, channels = (64, 3) if encoder == "conv4" else (4, 16)
    model = build(cls, size=size, channels=channels, image_encoder=encoder).eval()
    batch = make_batch(size=size, channels=channels)
    predictions = model(batch)
    assert model.internals == {} and model.plot(batch, predictions, 1) is None  # nothing recorded, nothing drawn
    model.recording = True
    predictions = model(batch)
    figure = model.plot(batch, predictions, 1)
    assert isinstance(figure, Figure)
    title = figure.get_suptitle()
    assert f"target {int(batch['answers'][1])} 'answer 1'" in title and "Q: question 1" in title
    if cls is SAN:
        assert len(figure.axes) >= 2  # one panel per hop (plus colour bars for features)
    model.recording = False
    model(batch)
    assert model.internals == {}

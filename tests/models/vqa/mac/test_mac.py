"""MAC and S-MAC: shapes, the original's parameter counts, padding, variational dropout, learning, per-step frames."""

from __future__ import annotations

import time

import pytest
import torch

from miprometheus import visualization as viz
from miprometheus.errors import ConfigError
from miprometheus.models.vqa.mac.mac import MAC
from miprometheus.models.vqa.mac.s_mac import SMAC
from miprometheus.plotting import Frames

MODELS = [MAC, SMAC]
VOCABULARY = 12


def make(cls: type, **overrides) -> MAC:
    values = dict(question_vocabulary_size=VOCABULARY, answer_vocabulary_size=5, num_channels=3, height=32,
                  width=32, dim=16, max_step=3, embedding_size=8, image_encoder="conv4")
    values.update(overrides)
    return cls(cls.Params(**values))


def random_batch(batch_size: int = 4, channels: int = 3, size: int = 32, max_length: int = 5, answers: int = 5,
                 seed: int = 0) -> dict:
    """A VQA batch of random images and questions of 1..max_length tokens (the longest present), PAD = 0 after."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_length + 1, (batch_size,), generator=generator)
    lengths[0] = max_length
    questions = torch.randint(1, VOCABULARY, (batch_size, max_length), generator=generator)
    questions[torch.arange(max_length).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return {
        "images": torch.rand(batch_size, channels, size, size, generator=generator),
        "questions": questions,
        "questions_length": lengths,
        "answers": torch.randint(0, answers, (batch_size,), generator=generator),
        "questions_text": [" ".join(f"w{int(t)}" for t in row[:n]) for row, n in zip(questions, lengths)],
        "answers_text": [f"a{int(a)}" for a in torch.randint(0, answers, (batch_size,), generator=generator)],
    }


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("encoder, channels, size, grid", [("conv4", 3, 32, 2), ("conv4", 3, 64, 4),
                                                           ("features", 16, 4, 4)])
def test_predictions_are_answer_logits_for_raw_pixels_and_feature_maps(cls, encoder, channels, size, grid):
    model = make(cls, image_encoder=encoder, num_channels=channels, height=size, width=size)
    batch = random_batch(channels=channels, size=size)
    predictions = model(batch)
    assert predictions.shape == (4, 5) and predictions.dtype == torch.float32
    assert set(model.input_definitions) == {"images", "questions", "questions_length"}
    assert model.input_definitions["images"].shape == (-1, channels, size, size)
    assert model.output_definitions["predictions"].shape == (-1, 5)
    assert model.internals == {}  # nothing recorded unless asked
    assert model.input_unit.grid_size == (grid, grid)
    model.recording = True
    model(batch)
    assert model.internals["read_attention"].shape == (4, 3, grid * grid)
    assert model.internals["control_attention"].shape == (4, 3, 5)


@pytest.mark.parametrize("cls, extra, expected", [
    (MAC, {}, 20_138_526),
    (MAC, {"self_attention": True, "memory_gate": True}, 20_664_864),
    (SMAC, {}, 19_089_436),
])
def test_parameter_count_at_the_paper_size_is_the_original_s_besides_the_word_embeddings(cls, extra, expected):
    # d = 512, 300-d embeddings, 28 answers, CLEVR's [1024, 14, 14] features (Hudson, Manning 2018). The
    # original's frozen embeddings belonged to the problem; here they are learned, V x 300 more.
    vocabulary = 83
    model = cls(cls.Params(question_vocabulary_size=vocabulary, answer_vocabulary_size=28, num_channels=1024,
                           height=14, width=14, **extra))
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.input_unit.question_encoder.embedding.weight.numel()
    assert embeddings == vocabulary * 300
    assert total - embeddings == expected


@pytest.mark.parametrize("cls", MODELS)
def test_extra_padding_changes_no_logit_and_padded_words_get_no_control_attention(cls):
    model = make(cls).eval()
    batch = random_batch(batch_size=6)
    padded = dict(batch, questions=torch.cat([batch["questions"], torch.zeros(6, 3, dtype=torch.int64)], dim=1))
    model.recording = True
    with torch.no_grad():
        logits = model(batch)
        attention = model.internals["control_attention"]  # [B, p, S]
        padded_logits = model(padded)
        padded_attention = model.internals["control_attention"]
    torch.testing.assert_close(padded_logits, logits, atol=1e-6, rtol=1e-5)
    real = torch.arange(8).unsqueeze(0) < batch["questions_length"].unsqueeze(1)  # [B, S + 3]
    assert torch.all(padded_attention.masked_select(~real.unsqueeze(1)) == 0.0)
    torch.testing.assert_close(padded_attention.sum(dim=2), torch.ones(6, 3))
    torch.testing.assert_close(padded_attention[:, :, :5], attention)


@pytest.mark.parametrize("cls", MODELS)
def test_variational_dropout_uses_one_mask_for_every_step_and_none_in_evaluation(cls):
    torch.manual_seed(0)
    model = make(cls, dim=32, max_step=4, dropout=0.5)
    with torch.no_grad():  # c_0, m_0 are learned from zero: make them non-zero to see their masks
        model.initial_control.fill_(1.0)
        model.initial_memory.fill_(1.0)
    batch = random_batch()
    model.recording = True
    model(batch)
    controls, memories = model.internals["controls"], model.internals["memories"]  # [B, p + 1, d]
    control_kept, memory_kept = controls[:, 0] != 0, memories[:, 0] != 0
    assert 0.2 < control_kept.float().mean() < 0.8  # rate 0.5 on 4 x 32 units
    torch.testing.assert_close(controls[:, 0][control_kept], torch.full_like(controls[:, 0][control_kept], 2.0))
    for step in range(1, 5):  # c_1..c_p, m_1..m_p: dropped exactly where c_0, m_0 were
        assert torch.equal(controls[:, step] != 0, control_kept)
        assert torch.equal(memories[:, step] != 0, memory_kept)
    assert not torch.equal(control_kept, memory_kept)  # two independent masks
    model(batch)
    assert not torch.equal(model.internals["controls"][:, 0] != 0, control_kept)  # a new draw per forward pass

    model.eval()
    with torch.no_grad():
        first, second = model(batch), model(batch)
    assert torch.equal(first, second)
    assert torch.all(model.internals["controls"] != 0) and torch.all(model.internals["memories"] != 0)


def test_a_closed_memory_gate_keeps_the_initial_memory():
    model = make(MAC, memory_gate=True, self_attention=True).eval()
    with torch.no_grad():
        model.cell.memory_gate.bias.fill_(50.0)  # sigmoid = 1: m_i = m_{i-1}
        model.initial_memory.normal_()
    model.recording = True
    with torch.no_grad():
        model(random_batch())
    memories = model.internals["memories"]
    torch.testing.assert_close(memories, model.initial_memory.expand_as(memories))


def test_parameters_a_model_cannot_be_built_with_are_config_errors():
    with pytest.raises(ConfigError, match="MAC: dropout must be in"):
        make(MAC, dropout=1.0)
    with pytest.raises(ConfigError, match="SMAC: max_step must be at least 1"):
        make(SMAC, max_step=0)


@pytest.mark.slow
@pytest.mark.parametrize("cls", MODELS)
def test_overfits_a_small_fixed_batch(cls):
    torch.manual_seed(0)
    model = make(cls, dim=32, max_step=3, answer_vocabulary_size=10)
    batch = random_batch(batch_size=16, answers=10, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    losses = []
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(batch), batch["answers"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        accuracy = float((model(batch).argmax(dim=1) == batch["answers"]).float().mean())
    assert losses[0] > 1.9  # about ln 10 at the start
    assert min(losses[-10:]) < 0.1 * losses[0], losses[::10]
    assert accuracy == 1.0
    assert time.perf_counter() - start < 30.0


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("encoder, channels, size", [("conv4", 3, 32), ("features", 16, 4)])
def test_plot_gives_one_frame_per_reasoning_step(cls, encoder, channels, size):
    model = make(cls, image_encoder=encoder, num_channels=channels, height=size, width=size, max_step=4)
    batch = random_batch(channels=channels, size=size)
    predictions = viz.recorded_forward(model, batch)
    frames = model.plot(batch, predictions, 1)
    assert isinstance(frames, Frames) and frames.steps == 4
    words = batch["questions_text"][1].split()
    labels = [tick.get_text() for ax in frames.figure.axes for tick in ax.get_xticklabels()]
    assert all(word in labels for word in words)
    images = viz.render_frames(frames)
    assert len(images) == 4 and len({im.size for im in images}) == 1
    assert images[0].tobytes() != images[-1].tobytes()  # the step (at least) changes from frame to frame
    model.eval()
    model(batch)  # not recording: nothing to draw
    assert model.plot(batch, predictions, 1) is None


@pytest.mark.parametrize("name, cls", [("MAC", MAC), ("SMAC", SMAC)])
def test_mip_list_reads_the_shared_parameters_from_the_source(name, cls):
    import dataclasses

    from miprometheus import catalogue, registry

    assert registry.get_model(name) is cls
    info = catalogue.describe("models", name)
    fields = dataclasses.fields(cls.Params)
    assert [p.name for p in info.params] == [f.name for f in fields]
    listed = {p.name: p for p in info.params}
    assert ("self_attention" in listed) == (cls is MAC)  # S-MAC has neither self-attention nor a memory gate
    assert listed["dim"].default == "512" and "from the problem" in listed["height"].doc

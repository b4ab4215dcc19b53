"""CLEVR and CLEVR-CoGenT on tiny folders in the official layout (JSON + RGBA PNGs, tests/clevr_fixtures.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from miprometheus.data import check_values
from miprometheus.errors import ConfigError, DataError
from miprometheus.problems.assets import write_assets_file
from miprometheus.problems.image_text_to_class import clevr
from miprometheus.problems.image_text_to_class.clevr import (
    ANSWERS,
    CLEVR,
    FAMILY_TYPES,
    QUESTION_CATEGORIES,
    QUESTION_TYPES,
    CLEVRCoGenT,
    tokenize,
)
from tests.clevr_fixtures import TRAIN, VAL, VAL_B, write_clevr, write_cogent, write_questions
from tests.conftest import run_mip

SMALL = (96, 64)  # width, height of the images of most tests (the official 480 x 320 in one)


@pytest.fixture(scope="module")
def clevr_folder(tmp_path_factory) -> Path:
    return write_clevr(tmp_path_factory.mktemp("CLEVR_v1.0"), SMALL)


@pytest.fixture
def fresh_clevr(tmp_path) -> Path:
    """A fixture folder of this test alone (to break)."""
    return write_clevr(tmp_path / "clevr", SMALL)


def make(folder: Path, split: str = "train", cls: type = CLEVR, **values) -> CLEVR:
    return cls(cls.Params(data_folder=str(folder), split=split, **values))


def ready(problem: CLEVR, assets: dict | None = None) -> CLEVR:
    """The problem with the training split's assets (its own when it is the training split)."""
    problem.use_assets(assets if assets is not None else problem.build_assets())
    return problem


# --- the fixed tables -----------------------------------------------------------------------------------------
def test_the_90_families_map_to_13_types_and_the_types_to_5_categories():
    assert len(FAMILY_TYPES) == 90 and set(FAMILY_TYPES) == set(QUESTION_TYPES) and len(QUESTION_TYPES) == 13
    families = [f for fams in clevr.TYPE_FAMILIES.values() for f in fams]
    assert sorted(families) == list(range(90))  # every family exactly once
    assert FAMILY_TYPES[0] == "equal_integer" and FAMILY_TYPES[25] == "count" and FAMILY_TYPES[89] == "query_size"
    assert [FAMILY_TYPES[f] for f in (64, 72, 73, 84, 85, 86)] == ["count", "count", "exist", "count", "exist",
                                                                   "query_shape"]
    grouped = [t for types in QUESTION_CATEGORIES.values() for t in types]
    assert sorted(grouped) == sorted(QUESTION_TYPES) and len(QUESTION_CATEGORIES) == 5
    assert len(ANSWERS) == 28 == len(set(ANSWERS))
    assert ANSWERS[:13] == ("yes", "no", *map(str, range(11)))


def test_tokenize_lower_cases_and_separates_punctuation():
    assert tokenize("What size is the cylinder; is it RED?") == ["what", "size", "is", "the", "cylinder", ";", "is",
                                                                 "it", "red", "?"]
    assert tokenize("Are there 2 cubes, or 10?") == ["are", "there", "2", "cubes", ",", "or", "10", "?"]


# --- batches --------------------------------------------------------------------------------------------------
def test_training_batches_hold_rgb_images_tokens_answers_and_types(clevr_folder):
    problem = ready(make(clevr_folder))
    assert len(problem) == len(TRAIN)
    batch = problem.collate_fn(list(range(len(TRAIN))))
    check_values("batch", batch, problem.output_definitions)
    assert batch["images"].shape == (5, 3, 128, 128) and batch["images"].dtype == torch.float32
    assert 0.0 <= float(batch["images"].min()) and float(batch["images"].max()) <= 1.0
    # the floor of the RGBA fixture is (128, 128, 128, 255): RGB after conversion, alpha dropped
    assert batch["images"][0, :, 2, 2].tolist() == pytest.approx([128 / 255] * 3, abs=1e-6)
    assert batch["answers"].tolist() == [ANSWERS.index(q[2]) for q in TRAIN]
    assert [problem.question_type_names[t] for t in batch["question_types"].tolist()] == \
        ["exist", "count", "query_color", "less_than", "exist"]
    lengths = [len(tokenize(q[1])) for q in TRAIN]
    assert batch["questions_length"].tolist() == lengths and batch["questions"].shape == (5, max(lengths))
    assert (batch["questions"][1, lengths[1]:] == 0).all() and (batch["questions"][1, :lengths[1]] > 1).all()
    assert batch["questions_text"][0] == "are there any blue cubes ?" and batch["answers_text"][1] == "2"
    assert batch["image_filenames"][:3] == ["CLEVR_train_000000.png", "CLEVR_train_000000.png",
                                            "CLEVR_train_000001.png"]
    assert not torch.equal(batch["images"][1], batch["images"][2])  # two images
    assert problem.default_values == {
        "question_vocabulary_size": len(problem.vocabulary), "answer_vocabulary_size": 28, "num_classes": 28,
        "pad_index": 0, "unk_index": 1, "max_question_length": max(lengths), "num_channels": 3, "height": 128,
        "width": 128}


def test_raw_images_keep_the_file_size_without_resize_and_are_read_through_a_small_cache(tmp_path):
    folder = write_clevr(tmp_path / "full")  # the official 480 x 320
    problem = ready(make(folder, resize=None, image_cache_size=1))
    assert problem.default_values["height"] == 320 and problem.default_values["width"] == 480
    batch = problem.collate_fn([4, 0, 2])
    assert batch["images"].shape == (3, 3, 320, 480)
    assert torch.equal(batch["images"][0], batch["images"][2])  # questions 4 and 2 share an image
    assert list(problem._image_cache) == [0]  # the last image decoded (of images 1, 0), no more
    resized = ready(make(folder, resize=[32, 48])).collate_fn([0])["images"]
    assert resized.shape == (1, 3, 32, 48)


def test_validation_words_the_training_split_lacks_are_unk(clevr_folder):
    train = ready(make(clevr_folder))
    assets = train.build_assets()
    val = ready(make(clevr_folder, "val"), assets)
    batch = val.collate_fn([0, 1])
    vocabulary = train.vocabulary
    assert "shiny" not in vocabulary and "material" not in vocabulary  # never extended by validation
    assert batch["questions"][0, 2] == vocabulary.unk_index  # how many SHINY spheres
    assert batch["questions"][1, 1] == vocabulary.unk_index  # what MATERIAL is the cube
    assert batch["questions"][0, 3] == vocabulary.index["spheres"]
    assert val.default_values["question_vocabulary_size"] == len(vocabulary)
    assert batch["answers"].tolist() == [ANSWERS.index("1"), ANSWERS.index("metal")]


def test_statistics_per_question_type_and_category_are_exact(clevr_folder):
    problem = ready(make(clevr_folder))
    batch = problem.collate_fn(list(range(5)))
    predicted = [0, 5, ANSWERS.index("red"), 1, 0]  # right, wrong (3 for "2"), right, right, wrong (yes for no)
    predictions = torch.nn.functional.one_hot(torch.tensor(predicted), 28).float()
    stats = problem.statistics(batch, predictions)
    values = {k: (v.total, v.count) for k, v in stats.items() if hasattr(v, "total")}
    assert values["acc"] == (3, 5)
    assert values["acc_exist"] == (1, 2) and values["acc_count"] == (0, 1)
    assert values["acc_query_color"] == (1, 1) and values["acc_less_than"] == (1, 1)
    assert values["acc_query_attribute"] == (1, 1) and values["acc_compare_integer"] == (1, 1)
    assert "acc_compare_attribute" not in values and "acc_equal_color" not in values  # none in the batch
    declared = problem.statistic_definitions
    assert {f"acc_{t}" for t in QUESTION_TYPES} | {f"acc_{c}" for c in QUESTION_CATEGORIES} <= set(declared)


def test_plot_shows_the_image_question_and_top_answers(clevr_folder):
    from matplotlib.figure import Figure

    problem = ready(make(clevr_folder))
    batch = problem.collate_fn([0, 1])
    assert isinstance(problem.plot(batch, 1, torch.randn(2, 28)), Figure)


def test_a_pickled_problem_carries_no_decoded_images(clevr_folder):
    problem = ready(make(clevr_folder))
    first = problem.collate_fn([0, 2])
    copy = pickle.loads(pickle.dumps(problem))
    assert not copy._image_cache and problem._image_cache
    assert torch.equal(copy.collate_fn([0, 2])["images"], first["images"])


# --- refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, split", [(CLEVR, "test"), (CLEVRCoGenT, "testA"), (CLEVRCoGenT, "testB")])
def test_the_test_splits_are_refused_their_answers_are_withheld(clevr_folder, cls, split):
    with pytest.raises(ConfigError, match="withhold") as info:
        make(clevr_folder, split, cls)
    assert ("'val'" if cls is CLEVR else "valA and valB") in str(info.value)


def test_a_missing_questions_file_names_the_file_and_the_archive(tmp_path):
    with pytest.raises(DataError) as info:
        make(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "questions" / "CLEVR_train_questions.json") in message
    assert "CLEVR_v1.0.zip" in message


def test_malformed_json_names_the_file_line_and_column(fresh_clevr):
    path = fresh_clevr / "questions" / "CLEVR_train_questions.json"
    path.write_text('{"info": {},\n "questions": [{"question": "Is it?",, }]}')
    with pytest.raises(DataError, match=rf"{path}:2:38: malformed JSON"):
        make(fresh_clevr)


def test_a_question_without_a_required_key_is_named(fresh_clevr):
    path = fresh_clevr / "questions" / "CLEVR_train_questions.json"
    data = json.loads(path.read_text())
    del data["questions"][3]["image_filename"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"question 3 \(question_index 3\) has no key 'image_filename'") as info:
        make(fresh_clevr)
    assert str(path) in str(info.value)


def test_an_unknown_answer_names_the_file_and_the_answer(fresh_clevr):
    path = fresh_clevr / "questions" / "CLEVR_train_questions.json"
    data = json.loads(path.read_text())
    data["questions"][1]["answer"] = "twelve"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown answer") as info:
        make(fresh_clevr)
    assert str(path) in str(info.value) and "twelve" in str(info.value)


def test_a_missing_image_is_named_at_construction(fresh_clevr):
    (fresh_clevr / "images" / "train" / "CLEVR_train_000001.png").unlink()
    with pytest.raises(DataError, match="CLEVR_train_000001.png") as info:
        make(fresh_clevr)
    assert str(fresh_clevr / "images" / "train") in str(info.value)
    make(fresh_clevr, "val")  # the other splits are not concerned


@pytest.mark.slow
def test_bad_data_is_exit_code_2_through_the_command_line(fresh_clevr, tmp_path):
    path = fresh_clevr / "questions" / "CLEVR_train_questions.json"
    path.write_text(path.read_text()[:-20])  # truncated
    config = tmp_path / "clevr.yaml"
    config.write_text(f"training:\n  problem: {{name: CLEVR, data_folder: {fresh_clevr}}}\n"
                      "  terminal_conditions: {epoch_limit: 1}\n")
    result = run_mip("split", config, "--fractions", "0.5", "0.5", "--output", tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{path}:1:" in result.stderr and "malformed JSON" in result.stderr and "Traceback" not in result.stderr


def test_bad_data_is_exit_code_2_for_mip_check(fresh_clevr, tmp_path, tiny_model, capsys):
    from miprometheus.cli import main

    (fresh_clevr / "images" / "val" / "CLEVR_val_000000.png").unlink()
    config = tmp_path / "clevr.yaml"
    config.write_text(f"""
training:
  problem: {{name: CLEVR, data_folder: {fresh_clevr}, resize: [16, 16]}}
  terminal_conditions: {{epoch_limit: 1}}
testing:
  problem: {{name: CLEVR, data_folder: {fresh_clevr}, split: val, resize: [16, 16]}}
model: {{name: {tiny_model}}}
""")
    assert main(["check", str(config), "--quiet"]) == 2
    assert "CLEVR_val_000000.png" in capsys.readouterr().err


# --- the parsed questions are cached ------------------------------------------------------------------------
def test_parsed_questions_are_cached_until_the_file_changes(fresh_clevr, monkeypatch):
    calls = []
    parse = clevr.parse_questions
    monkeypatch.setattr(clevr, "parse_questions", lambda path: calls.append(path) or parse(path))
    make(fresh_clevr)
    make(fresh_clevr)
    assert len(calls) == 1 and list((fresh_clevr / "generated_files").glob("clevr_questions_train-*.pt"))
    write_questions(fresh_clevr, "train", TRAIN[:2])  # a new file: parsed again
    assert len(make(fresh_clevr)) == 2 and len(calls) == 2
    cache = tmp = fresh_clevr / "elsewhere"
    assert len(make(fresh_clevr, cache_folder=str(cache))) == 2 and list(tmp.glob("*.pt"))


# --- CoGenT -------------------------------------------------------------------------------------------------
def test_cogent_reads_its_splits_and_carries_a_vocabulary_to_a_valB_run(tmp_path):
    folder = write_cogent(tmp_path / "CLEVR_CoGenT_v1.0", SMALL)
    train = ready(make(folder, "trainA", CLEVRCoGenT))
    assert len(train) == 4 and train.collate_fn([0])["images"].shape == (1, 3, 128, 128)
    run = tmp_path / "trainA_run"
    write_assets_file(run / "assets.json", "CLEVRCoGenT", train.build_assets())

    finetune = make(folder, "valB", CLEVRCoGenT, vocabulary_from=str(run))  # a fine-tune on valB
    assets = finetune.build_assets()
    assert assets["question_vocabulary"] == train.build_assets()["question_vocabulary"]
    batch = ready(finetune, assets).collate_fn([0, 1])
    vocabulary = train.vocabulary
    tokens = [tokenize(q[1]) for q in VAL_B]
    expected = [[vocabulary.index.get(t, vocabulary.unk_index) for t in words] for words in tokens]
    assert batch["questions"][0, :len(tokens[0])].tolist() == expected[0]
    assert batch["questions"][1, :len(tokens[1])].tolist() == expected[1]
    assert {"gray", "cylinders"} & set(vocabulary.index) == set()  # B's new words: UNK
    assert expected[0][3] == expected[0][4] == vocabulary.unk_index and vocabulary.unk_index not in expected[1]
    assert batch["image_filenames"] == ["CLEVR_valB_000000.png"] * 2
    assert finetune.default_values["question_vocabulary_size"] == len(vocabulary)


# --- end to end -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_tiny_model_learns_the_training_questions_and_is_tested_on_val(clevr_folder, tmp_path, tiny_model):
    from miprometheus.layout import ASSETS
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    config = tmp_path / "clevr.yaml"
    config.write_text(f"""
training:
  problem: {{name: CLEVR, data_folder: {clevr_folder}, resize: [16, 16], batch_size: 5}}
  optimizer: {{name: Adam, lr: 0.1}}
  terminal_conditions: {{epoch_limit: 40}}
  seed: 1
testing:
  problem: {{name: CLEVR, data_folder: {clevr_folder}, split: val, resize: [16, 16], batch_size: 2}}
model: {{name: {tiny_model}, embedding_size: 8}}
""")
    options = RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["mip", "train"])
    result = runs.train([str(config)], [], options, test_after=True)
    assert result.cause == "limit"
    rows = (result.folder / "training_statistics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(",")))
    assert float(last["acc"]) == 1.0 and float(last["loss"]) < 0.1  # the 5 questions learned
    assets = json.loads((result.folder / ASSETS).read_text())["assets"]
    assert "shiny" not in assets["question_vocabulary"]["tokens"] and assets["image_features"] is None
    assert result.test is not None and result.test["samples_aggregated"] == len(VAL)

"""Sort-of-CLEVR and ShapeColorQuery: the generator's rules (MI-Prometheus's variant), the scene cache, the
token questions and their original float encoding, the vocabulary and the grouped statistics."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from miprometheus import catalogue, registry
from miprometheus.data import DataDefinition, check_values
from miprometheus.errors import ConfigError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.problems.image_text_to_class.shape_color_query import ShapeColorQuery
from miprometheus.problems.image_text_to_class.sort_of_clevr import (
    ANSWER_NAMES,
    BACKGROUND_RGB,
    COLOR_NAMES,
    COLOR_RGB,
    QUESTION_TYPE_NAMES,
    SHAPE_NAMES,
    SortOfCLEVR,
    ask_questions,
    block_size,
    describe_scene,
    draw_layouts,
    generate,
    half_size,
    relational_ties,
    tie_ceiling,
)
from miprometheus.statistics import Aggregator, Measure
from miprometheus.workers import runs
from tests.conftest import CONFIGS, ROOT

NON_RELATIONAL, RELATIONAL = (0, 1, 2), (3, 4, 5, 6)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One cache folder for the module: problems with the same parameters read the same file."""
    return tmp_path_factory.mktemp("sort-of-clevr")


def make(folder: Path, cls: type = SortOfCLEVR, assets: dict | None = None, **values) -> SortOfCLEVR:
    """A problem with small defaults (20 scenes of 32 px), given its training split's assets (or its own)."""
    params = cls.Params(data_folder=str(folder), **{"num_scenes": 20, "img_size": 32, **values})
    problem = cls(params)
    problem.use_assets(assets if assets is not None else problem.build_assets())
    return problem


def whole(problem: SortOfCLEVR) -> dict:
    """Every question of a split in one batch."""
    return problem.collate_fn(list(range(len(problem))))


# --- the generator's rules --------------------------------------------------------------------------------
def test_every_question_has_one_colour_one_type_and_an_answer_of_its_kind(folder):
    problem = make(folder)
    batch = whole(problem)
    encoding, answers, types = batch["questions_encoding"], batch["answers"], batch["question_types"]
    assert encoding.shape == (len(problem), 13) and encoding.dtype == torch.float32
    assert torch.equal(encoding[:, :6].sum(1), torch.ones(len(problem)))  # one colour bit
    assert torch.equal(encoding[:, 6:].sum(1), torch.ones(len(problem)))  # one type bit
    assert torch.equal(encoding[:, 6:].argmax(1), types)
    # 7 questions per object, object by object: types 0..6 repeat
    assert len(problem) == 7 * int(problem.scene_objects.sum())
    assert torch.equal(types, torch.arange(7).repeat(len(problem) // 7))
    for t in (0, 3, 4):
        assert set(answers[types == t].tolist()) <= {6, 7}  # rectangle, circle
    for t in (1, 2):
        assert set(answers[types == t].tolist()) <= {8, 9}  # yes, no
    queried = encoding[:, :6].argmax(1)
    for t in (5, 6):
        assert set(answers[types == t].tolist()) <= set(range(6))
        assert bool((answers[types == t] != queried[types == t]).all())  # never the queried colour (n >= 2)
    assert [ANSWER_NAMES[a] for a in answers.tolist()] == batch["answers_text"]
    assert set(problem.scene_objects.tolist()) <= set(range(2, 7)) and len(set(problem.scene_objects.tolist())) > 1
    check_values("batch", batch, problem.output_definitions)


@pytest.mark.parametrize(("img_size", "block", "half"), [(128, 28, 10), (32, 7, 2)])
def test_geometry_of_the_scenes(folder, img_size, block, half):
    assert (block_size(img_size), half_size(img_size)) == (block, half)
    problem = make(folder, num_scenes=12, img_size=img_size)
    images = problem.scene_images  # uint8 [S, H, W, 3]
    assert images.shape == (12, img_size, img_size, 3) and images.dtype == torch.uint8
    grid = {(k + 0.5) * block for k in range(4)}  # {14, 42, 70, 98} at 128 px; {3.5, ..., 24.5} at 32 px
    for scene in range(12):
        image = images[scene]
        assert image[img_size - 1, img_size - 1].tolist() == list(BACKGROUND_RGB)  # outside the 4 x block grid
        for i in range(int(problem.scene_objects[scene])):
            cx, cy = problem.scene_centers[scene, i].tolist()
            assert any(abs(cx - g) <= 2 and float(cx - g).is_integer() for g in grid)
            assert any(abs(cy - g) <= 2 and float(cy - g).is_integer() for g in grid)
            rgb = COLOR_RGB[int(problem.scene_colors[scene, i])]
            assert image[int(cy), int(cx)].tolist() == list(rgb)  # the object's colour at its centre pixel
            if img_size == 128:  # objects never touch at 128 px: each colour is one whole object
                rows, columns = (image == torch.tensor(rgb, dtype=torch.uint8)).all(-1).nonzero(as_tuple=True)
                assert (int(rows.min()), int(rows.max())) == (cy - 10, cy + 10)  # corners inclusive: 21 px
                assert (int(columns.min()), int(columns.max())) == (cx - 10, cx + 10)
                if int(problem.scene_shapes[scene, i]) == 0:
                    assert rows.numel() == 21 * 21  # a filled square
                else:
                    assert 300 < rows.numel() < 21 * 21  # the inscribed disc (about pi * 10.5^2 pixels)
    assert problem.default_values["height"] == problem.default_values["width"] == img_size


def test_images_are_standard_chw_in_0_1_and_shared_by_the_questions_of_a_scene(folder):
    problem = make(folder)
    batch = problem.collate_fn([0, 1, 7, len(problem) - 1])
    images = batch["images"]
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and images.is_contiguous()
    scene = int(problem.question_scene[7])
    assert torch.equal(images[2], problem.scene_images[scene].permute(2, 0, 1).float() / 255)  # row = y
    assert torch.equal(images[0], images[1])  # questions of one scene, one image
    assert batch["scene_descriptions"][0] == problem.scene_descriptions[0]
    assert batch["scene_descriptions"][0].startswith("| ") and batch["scene_descriptions"][0].endswith(" | ")
    assert problem.default_values["num_objects"] == 6 and problem.default_values["max_question_length"] == 2


def brute_force_answers(problem: SortOfCLEVR) -> list[int]:
    """Every question's answer, recomputed from the stored scene with plain Python (stable ``sorted``)."""
    answers = []
    for scene in range(problem.scene_objects.numel()):
        n = int(problem.scene_objects[scene])
        colors = problem.scene_colors[scene, :n].tolist()
        shapes = problem.scene_shapes[scene, :n].tolist()
        centers = problem.scene_centers[scene, :n].tolist()
        half = int(problem.params.img_size / 2)
        for i in range(n):
            distance = [(centers[j][0] - centers[i][0]) ** 2 + (centers[j][1] - centers[i][1]) ** 2 for j in range(n)]
            order = sorted(range(n), key=lambda j: distance[j])
            nearest, farthest = order[1], order[-1]
            answers += [6 + shapes[i], 8 if centers[i][1] > half else 9, 8 if centers[i][0] < half else 9,
                        6 + shapes[nearest], 6 + shapes[farthest], colors[nearest], colors[farthest]]
    return answers


@pytest.mark.parametrize("img_size", [32, 64])
def test_answers_equal_a_brute_force_recomputation_from_the_scene(folder, img_size):
    problem = make(folder, num_scenes=40, img_size=img_size, min_objects=5)
    assert problem.answers.tolist() == brute_force_answers(problem)
    two = make(folder, num_scenes=10, min_objects=2, max_objects=2)  # nearest and farthest: the same object
    types, answers = two.question_types_tensor, two.answers
    assert torch.equal(answers[types == 3], answers[types == 4]) and torch.equal(answers[types == 5],
                                                                                  answers[types == 6])


def test_the_description_of_a_scene():
    data = generate(num_scenes=1, img_size=128, min_objects=2, max_objects=2, dataset_seed=3, split="train")
    objects = [f"{COLOR_NAMES[c]} {SHAPE_NAMES[s]} at ({x!r}, {y!r})" for c, s, (x, y) in
               zip(data["colors"][0].tolist(), data["shapes"][0].tolist(), data["centers"][0].tolist())]
    text = describe_scene(data["colors"][0].tolist(), data["shapes"][0].tolist(), data["centers"][0].tolist())
    assert text == "| " + " | ".join(objects) + " | "
    assert ".0, " in text and ".0) | " in text  # floats, as the original printed them: (42.0, 70.0)


# --- jitter ties and tie_margin ---------------------------------------------------------------------------
def brute_force_ties(layouts: dict, img_size: int, tie_margin: float = 0.0) -> list[tuple]:
    """Every relational question that tie_margin keeps, recomputed with plain Python: (scene, object, type,
    answer, margin, tied, ambiguous, reordered, ceiling) — the oracle knows the cells, not the jitter."""
    block, rows = block_size(img_size), []
    for scene, n in enumerate(layouts["num_objects"].tolist()):
        colors, shapes = layouts["colors"][scene, :n].tolist(), layouts["shapes"][scene, :n].tolist()
        centers = layouts["centers"][scene, :n].tolist()
        cells = [(x // block, y // block) for x, y in centers]
        for i in range(n):
            squared = [(x - centers[i][0]) ** 2 + (y - centers[i][1]) ** 2 for x, y in centers]
            order = sorted(range(n), key=lambda j: squared[j])
            others = [j for j in range(n) if j != i]
            in_cells = {j: (cells[j][0] - cells[i][0]) ** 2 + (cells[j][1] - cells[i][1]) ** 2 for j in others}
            for kind, answering, extreme in ((3, order[1], min), (4, order[-1], max), (5, order[1], min),
                                             (6, order[-1], max)):
                own = [6 + shape for shape in shapes] if kind in (3, 4) else colors  # each object's answer
                answer = own[answering]
                margin = min((abs(math.dist(centers[i], centers[j]) - math.dist(centers[i], centers[answering]))
                              for j in others if own[j] != answer), default=math.inf)
                if margin < tie_margin:
                    continue
                best = extreme(in_cells.values())
                choice = [j for j in others if in_cells[j] == best]
                rows.append((scene, i, kind, answer, margin, len(choice) > 1, len({own[j] for j in choice}) > 1,
                             answering not in choice, sum(own[j] == answer for j in choice) / len(choice)))
    return rows


def as_rows(ties: dict) -> list[tuple]:
    keys = ("scene", "object", "type", "answer", "margin", "tied", "ambiguous", "reordered", "ceiling")
    return list(zip(*(ties[key].tolist() for key in keys)))


@pytest.mark.parametrize(("img_size", "tie_margin"), [(64, 0.0), (64, 2.0), (32, 1.5), (128, 4)])
def test_relational_ties_equal_a_brute_force_oracle_over_the_cells(img_size, tie_margin):
    layouts = draw_layouts(torch.Generator().manual_seed(7), 60, 3, 6, img_size)
    ties, expected = as_rows(relational_ties(layouts, img_size, tie_margin)), brute_force_ties(layouts, img_size,
                                                                                              tie_margin)
    assert [row[:4] + row[5:8] for row in ties] == [row[:4] + row[5:8] for row in expected]
    assert [row[4] for row in ties] == pytest.approx([row[4] for row in expected], abs=1e-9)
    assert [row[8] for row in ties] == pytest.approx([row[8] for row in expected], abs=1e-12)
    flags = relational_ties(layouts, img_size, tie_margin)
    assert bool(flags["tied"][flags["ambiguous"]].all())  # different answers among the oracle's choice: a tie
    assert bool((flags["ceiling"][~flags["ambiguous"] & ~flags["reordered"]] == 1).all())
    if tie_margin == 0:
        assert bool(flags["tied"].any()) and bool(flags["ambiguous"].any()) and bool((flags["ceiling"] < 1).any())


def one_scene(centers: list[tuple[float, float]], colors: list[int], shapes: list[int]) -> dict:
    return {"num_objects": torch.tensor([len(centers)]), "colors": torch.tensor([colors]),
            "shapes": torch.tensor([shapes]), "centers": torch.tensor([centers], dtype=torch.float32)}


def test_two_neighbours_one_cell_away_are_a_tie_that_the_jitter_decides():
    # 64 px: cells of 14 px, centres at 7 + 14 k. Object 0 in cell (0, 0); object 1 (green) one cell to the right
    # and 1 px nearer, object 2 (red) one cell up; object 3 far away. All rectangles.
    layouts = one_scene([(7, 7), (20, 7), (7, 21), (49, 49)], [0, 1, 2, 3], [0, 0, 0, 0])
    ties = relational_ties(layouts, 64)
    first = {QUESTION_TYPE_NAMES[t]: row for t, row in zip(ties["type"].tolist(), as_rows(ties)) if row[1] == 0}
    assert first["nearest_color"][3:] == (1, 1.0, True, True, False, 0.5)  # green, by 1 px: a coin toss
    assert first["nearest_shape"][3:] == (6, math.inf, True, False, False, 1.0)  # both rectangles: no rival
    # the farthest's closest rival is the red object, 14 px away
    assert first["farthest_color"][3:5] == (3, pytest.approx(math.dist((7, 7), (49, 49)) - 14))
    assert not first["farthest_color"][5]
    table = tie_ceiling(ties)
    assert table["relational"]["questions"] == 16 and set(table) == {*QUESTION_TYPE_NAMES[3:], "relational"}
    assert table["nearest_color"]["margin_below_2"] == pytest.approx(
        float((ties["margin"][ties["type"] == 5] < 2).double().mean()))

    asked = ask_questions(layouts, 64, tie_margin=2)
    asked_rows = set(zip(asked["object"].tolist(), asked["type"].tolist()))
    assert (0, 5) not in asked_rows and (0, 3) in asked_rows  # the 1 px colour tie is dropped, not the shape
    assert {(obj, t) for obj in range(4) for t in range(3)} <= asked_rows  # never a non-relational question
    assert (0, 5) in set(zip(*(ask_questions(layouts, 64, tie_margin=1)[k].tolist() for k in ("object", "type"))))


def test_with_a_tie_margin_no_kept_relational_question_is_ambiguous_and_the_scenes_stay(folder):
    full, kept = make(folder, num_scenes=40, img_size=64, min_objects=4), make(folder, num_scenes=40, img_size=64,
                                                                              min_objects=4, tie_margin=2.0)
    assert kept.cache_file != full.cache_file
    assert torch.equal(kept.scene_images, full.scene_images) and torch.equal(kept.scene_centers, full.scene_centers)
    questions = list(zip(kept.question_scene.tolist(), kept.question_object.tolist(),
                         kept.question_types_tensor.tolist(), kept.answers.tolist()))
    every = list(zip(full.question_scene.tolist(), full.question_object.tolist(),
                     full.question_types_tensor.tolist(), full.answers.tolist()))
    expected_relational = {row[:4] for row in brute_force_ties(full.scene_layouts(), 64, 2.0)}
    assert questions == [q for q in every if q[2] < 3 or q in expected_relational]  # same order, same answers
    assert len(questions) < len(every) and sum(q[2] < 3 for q in questions) == sum(q[2] < 3 for q in every)
    for scene, obj, kind, answer in questions:  # the definition, from the stored scene
        if kind < 3:
            continue
        n = int(kept.scene_objects[scene])
        centers = kept.scene_centers[scene, :n].tolist()
        own = [int(kept.scene_shapes[scene, j]) + 6 if kind in (3, 4) else int(kept.scene_colors[scene, j])
               for j in range(n)]
        distance = [math.dist(centers[obj], c) for c in centers]
        answering = [j for j in range(n) if j != obj and own[j] == answer]
        best = (min if kind in (3, 5) else max)(distance[j] for j in answering)
        assert all(abs(distance[j] - best) >= 2.0 for j in range(n) if j != obj and own[j] != answer)
    query = make(folder, ShapeColorQuery, num_scenes=40, img_size=64, min_objects=4, tie_margin=2)
    assert query.cache_file == kept.cache_file and torch.equal(query.answers, kept.answers)


def test_the_default_generation_and_its_cache_name_are_those_from_before_the_tie_margin(tmp_path):
    problem = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=4, img_size=32))
    assert problem.params.tie_margin == 0 and "tie_margin" not in problem.cache_params()
    assert problem.cache_file.name == "sort_of_clevr-28b8beb1676a8b0e98a9.pt"  # the name before the option
    data = cache_content(problem.cache_file)
    digest = hashlib.sha256()
    for key in sorted(data):
        if key != "images":  # (the images come from Pillow, whose drawing may change between versions)
            digest.update(data[key].numpy().tobytes())
    # scenes and questions as the generator made them before the option (commit ed2ad9b)
    assert digest.hexdigest() == "c8391dd844f52f8af28640c4732c1e8871e8909504efbb0bd78f17cd2c5f1e34"
    assert len(problem) == 84 and torch.equal(data["question_type"], torch.arange(7).repeat(12).to(torch.uint8))
    same = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=4, img_size=32, tie_margin=0))
    assert same.cache_file == problem.cache_file
    two = [SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=4, img_size=32, tie_margin=m) for m in (2, 2.0)]
    assert SortOfCLEVR(two[0]).cache_file == SortOfCLEVR(two[1]).cache_file != problem.cache_file


# --- randomness and the cache -----------------------------------------------------------------------------
OTHER_PROCESS = """
import sys, torch
torch.manual_seed(12345)
torch.rand(7)
from miprometheus.problems.image_text_to_class.sort_of_clevr import SortOfCLEVR
problem = SortOfCLEVR(SortOfCLEVR.Params(data_folder=sys.argv[1], num_scenes=20, img_size=32, dataset_seed=5))
print(problem.cache_file)
"""


def cache_content(path: Path) -> dict:
    return torch.load(path, weights_only=True)["data"]


def test_the_same_dataset_seed_gives_the_same_cache_in_another_process(tmp_path):
    here = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path / "a"), num_scenes=20, img_size=32,
                                          dataset_seed=5))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "99"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(OTHER_PROCESS), str(tmp_path / "b")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    there = Path(result.stdout.split()[-1])
    assert there.name == here.cache_file.name and there != here.cache_file
    mine, theirs = cache_content(here.cache_file), cache_content(there)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[key], theirs[key]) for key in mine)


def test_each_split_name_and_dataset_seed_has_its_own_scenes_and_the_run_seed_changes_nothing():
    def scenes(seed: int = 0, split: str = "train", run_seed: int = 0) -> torch.Tensor:
        torch.manual_seed(run_seed)
        return generate(num_scenes=10, img_size=32, min_objects=2, max_objects=6, dataset_seed=seed, split=split)

    train = scenes()
    assert all(torch.equal(value, scenes(run_seed=777)[key]) for key, value in train.items())
    assert not torch.equal(train["images"], scenes(split="validation")["images"])
    assert not torch.equal(train["images"], scenes(split="test")["images"])
    assert not torch.equal(train["images"], scenes(seed=1)["images"])


def test_the_cache_holds_each_image_once_per_scene(tmp_path):
    problem = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=10, img_size=64))
    per_scene = 10 * 64 * 64 * 3
    size = problem.cache_file.stat().st_size
    assert per_scene < size < 1.1 * per_scene + 20_000  # not len(problem) images: that would be ~28x more
    assert len(problem) * 64 * 64 * 3 > 10 * size
    assert [p.name for p in tmp_path.glob("*.pt")] == [problem.cache_file.name]


def test_a_corrupt_cache_file_is_rebuilt(tmp_path):
    first = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=5, img_size=32))
    first.cache_file.write_bytes(b"half a file")
    again = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), num_scenes=5, img_size=32))
    assert torch.equal(again.scene_images, first.scene_images) and again.tokens == first.tokens
    assert cache_content(again.cache_file)["images"].shape == (5, 32, 32, 3)


def test_sort_of_clevr_and_shape_color_query_share_the_scene_cache(folder):
    sort_of_clevr, query = make(folder, num_scenes=6), make(folder, ShapeColorQuery, num_scenes=6)
    assert sort_of_clevr.cache_file == query.cache_file
    assert torch.equal(sort_of_clevr.answers, query.answers)
    assert torch.equal(whole(sort_of_clevr)["images"], whole(query)["images"])


# --- the question vocabulary ------------------------------------------------------------------------------
def test_the_vocabulary_comes_from_the_training_split_and_unseen_words_are_unk(folder):
    train = make(folder, num_scenes=1, min_objects=2, max_objects=2)  # a scene of two colours
    seen = set(train.question_colors.tolist())
    assert len(seen) == 2
    assets = train.build_assets()
    assert assets["answers"] == list(ANSWER_NAMES)
    validation = make(folder, assets=assets, split="validation", num_scenes=20)
    assert validation.default_values["question_vocabulary_size"] == 2 + 2 + 7  # PAD, UNK, 2 colours, 7 types
    unseen = torch.tensor([c not in seen for c in validation.question_colors.tolist()])
    assert bool(unseen.any()) and bool((~unseen).any())
    assert bool((validation.questions[unseen, 0] == validation.vocabulary.unk_index).all())
    assert not bool((validation.questions[~unseen, 0] == validation.vocabulary.unk_index).any())
    assert validation.vocabulary.decode(validation.questions[0].tolist())[1] == QUESTION_TYPE_NAMES[0]


# --- statistics -------------------------------------------------------------------------------------------
def test_grouped_statistics_over_a_split_equal_the_brute_force_counts(folder):
    problem = make(folder, num_scenes=8)
    assert set(problem.statistic_definitions) == {"acc", "batch_size", "acc_relational", "acc_non_relational",
                                                  *(f"acc_{t}" for t in QUESTION_TYPE_NAMES)}
    generator = torch.Generator().manual_seed(0)
    aggregator = Aggregator(problem.statistic_definitions)
    correct, types = [], []
    order = torch.randperm(len(problem), generator=generator).tolist()
    for start in range(0, len(problem), 7):  # batches of 7, the last one shorter
        batch = problem.collate_fn(order[start:start + 7])
        predictions = torch.randn(len(batch["answers"]), 10, generator=generator)
        predictions[:, 6:] += 1.0  # shape and yes/no answers more often right, so the groups differ
        loss = float(problem.loss(batch, predictions))
        aggregator.add(len(batch["answers"]), Measure(loss * len(batch["answers"]), len(batch["answers"])),
                       problem.statistics(batch, predictions))
        correct.append(predictions.argmax(1) == batch["answers"])
        types.append(batch["question_types"])
    correct_all, types_all = torch.cat(correct), torch.cat(types)
    result = aggregator.result()

    def accuracy(members) -> float:
        chosen = torch.isin(types_all, torch.tensor(members))
        return int(correct_all[chosen].sum()) / int(chosen.sum())

    assert result["acc"] == pytest.approx(int(correct_all.sum()) / len(problem), abs=1e-12)
    assert result["acc_relational"] == pytest.approx(accuracy(RELATIONAL), abs=1e-12)
    assert result["acc_non_relational"] == pytest.approx(accuracy(NON_RELATIONAL), abs=1e-12)
    for t, name in enumerate(QUESTION_TYPE_NAMES):
        assert result[f"acc_{name}"] == pytest.approx(accuracy([t]), abs=1e-12)
    assert result["samples_aggregated"] == len(problem)


# --- ShapeColorQuery --------------------------------------------------------------------------------------
def decode_sort_of_clevr(encoding: torch.Tensor) -> list[str]:
    return [f"{COLOR_NAMES[int(row[:6].argmax())]} {QUESTION_TYPE_NAMES[int(row[6:].argmax())]}" for row in encoding]


def decode_shape_color_query(encoding: torch.Tensor) -> list[str]:
    words = []
    for rows in encoding:
        shape = SHAPE_NAMES[int(rows[0].argmax())] if rows[0].any() else "object"
        words.append(f"{shape} {COLOR_NAMES[int(rows[1].argmax())]} {QUESTION_TYPE_NAMES[int(rows[2].argmax())]}")
    return words


def test_questions_encoding_matches_the_tokens(folder):
    batch = whole(make(folder))
    assert decode_sort_of_clevr(batch["questions_encoding"]) == batch["questions_text"]
    query = make(folder, ShapeColorQuery)
    batch = whole(query)
    assert batch["questions_encoding"].shape == (len(query), 3, 7)
    assert decode_shape_color_query(batch["questions_encoding"]) == batch["questions_text"]


def test_shape_color_query_hides_the_shape_when_it_is_asked(folder):
    query = make(folder, ShapeColorQuery)
    batch = whole(query)
    encoding, types = batch["questions_encoding"], batch["question_types"]
    assert bool((encoding[types == 0, 0] == 0).all())  # row 0 all zero: the answer is not leaked
    assert bool((encoding[types != 0, 0].sum(1) == 1).all())
    words = [text.split() for text in batch["questions_text"]]
    assert all((w[0] == "object") == (t == 0) for w, t in zip(words, types.tolist()))
    shapes = query.question_shapes[types != 0]
    assert [SHAPE_NAMES[s] for s in shapes.tolist()] == [w[0] for w, t in zip(words, types.tolist()) if t != 0]
    assert batch["questions"].shape == (len(query), 3) and query.default_values["max_question_length"] == 3
    assert torch.equal(batch["answers"], whole(make(folder))["answers"])  # the same scenes, the same answers


def test_the_plot_shows_the_question_in_words(folder):
    query = make(folder, ShapeColorQuery)
    batch = query.collate_fn([3, 7])
    figure = query.plot(batch, 1, torch.randn(2, 10))
    texts = " ".join(t.get_text() for t in figure.texts)
    assert "What is the shape of the " in texts and "object?" in texts  # type 0: no shape named
    figure = query.plot(batch, 0)
    assert "nearest to the " in " ".join(t.get_text() for t in figure.texts)


# --- parameters, the catalogue and the shipped configs ------------------------------------------------------
@pytest.mark.parametrize(("values", "message"), [
    ({"img_size": 16}, "img_size must be between 23 and 4096"),
    ({"max_objects": 7}, "max_objects <= 6"),
    ({"min_objects": 1}, "2 <= min_objects"),
    ({"min_objects": 4, "max_objects": 3}, "min_objects"),
    ({"split": "dev"}, "split must be one of train, validation, test"),
    ({"num_scenes": 0}, "num_scenes must be at least 1"),
    ({"batch_size": 0}, "batch_size must be between 1 and 65536"),
    ({"tie_margin": -1.0}, "tie_margin must be at least 0"),
    ({"tie_margin": "2px"}, "tie_margin must be a finite number"),
    ({"tie_margin": True}, "tie_margin must be a finite number"),
    ({"tie_margin": float("nan")}, "tie_margin must be a finite number"),
    ({"tie_margin": float("inf")}, "tie_margin must be a finite number"),
])
def test_bad_parameters_are_config_errors(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path), **values))
    assert not list(tmp_path.glob("*.pt"))  # refused before generating anything


@pytest.mark.parametrize("name", ["SortOfCLEVR", "ShapeColorQuery"])
def test_mip_list_reads_the_parameters_from_the_source(name):
    info = catalogue.describe("problems", name)
    cls = registry.get("problems", name)
    assert [p.name for p in info.params] == [f.name for f in dataclasses.fields(cls.Params)]
    assert info.doc.splitlines()[0] == cls.__doc__.strip().splitlines()[0]


@pytest.fixture
def tiny_vqa_model():
    """A small VQA model registered for the test (forgotten afterwards)."""
    before = dict(registry._registered["models"])

    @registry.register_model
    class TinyVQAForSortOfCLEVR(Model):
        """Mean-pooled pixels and question embeddings, then a linear layer."""

        @dataclasses.dataclass
        class Params:
            question_vocabulary_size: int = param(doc="question tokens", from_problem=True)
            answer_vocabulary_size: int = param(doc="answers", from_problem=True)

        def __init__(self, params: Params) -> None:
            super().__init__(params)
            self.embedding = torch.nn.Embedding(params.question_vocabulary_size, 8, padding_idx=0)
            self.output = torch.nn.Linear(8 + 3, params.answer_vocabulary_size)
            self.input_definitions = {"images": DataDefinition((-1, 3, -1, -1), "float32", "images"),
                                      "questions": DataDefinition((-1, -1), "int64", "tokens")}
            self.output_definitions = {"predictions": DataDefinition((-1, params.answer_vocabulary_size), "float32",
                                                                     "answer logits")}

        def forward(self, batch: dict) -> torch.Tensor:
            features = torch.cat([self.embedding(batch["questions"]).mean(1), batch["images"].mean((2, 3))], 1)
            return self.output(features)

    yield TinyVQAForSortOfCLEVR.__name__
    registry._registered["models"].clear()
    registry._registered["models"].update(before)


@pytest.mark.parametrize("default", ["default_sort_of_clevr.yaml", "default_shape_color_query.yaml"])
def test_the_default_configs_pass_check_with_a_model(tmp_path, tiny_vqa_model, default):
    config = tmp_path / "experiment.yaml"
    config.write_text(f"default_configs: [{CONFIGS / 'vqa' / default}]\nmodel:\n  name: {tiny_vqa_model}\n")
    overrides = [f"training.problem.data_folder={tmp_path / 'data'}", "training.problem.num_scenes=3",
                 "validation.problem.num_scenes=2", "testing.problem.num_scenes=2"]
    spec, report, _ = runs.check([str(config)], overrides)
    assert [line.split(":")[0] for line in report] == ["training", "validation", "testing"]
    splits = {name: split.problem_params for name, split in spec.splits.items()}
    assert [p.split for p in splits.values()] == ["train", "validation", "test"]
    assert {p.img_size for p in splits.values()} == {64} and {p.data_folder for p in splits.values()} == {
        str(tmp_path / "data")}
    assert len(list((tmp_path / "data").glob("*.pt"))) == 3  # one cache file per split


def test_a_short_training_run_with_test_and_visualisation(tmp_path, tiny_vqa_model):
    """Through the framework: assets saved, grouped statistics in the files, the problem's figure drawn."""
    from miprometheus.statistics import read_csv
    from miprometheus.workers.run_folder import RunOptions

    config = tmp_path / "experiment.yaml"
    config.write_text(f"default_configs: [{CONFIGS / 'vqa' / 'default_shape_color_query.yaml'}]\n"
                      f"model:\n  name: {tiny_vqa_model}\n")
    overrides = [f"training.problem.data_folder={tmp_path / 'data'}", "training.problem.num_scenes=4",
                 "training.problem.img_size=32", "validation.problem.num_scenes=2", "testing.problem.num_scenes=2",
                 "training.problem.batch_size=16", "validation.problem.batch_size=16", "testing.problem.batch_size=16",
                 "training.terminal_conditions.epoch_limit=2", "training.seed=3"]
    options = RunOptions(expdir=tmp_path / "experiments", progress=False, visualize=1, command_line=["test"])
    result = runs.train([str(config)], overrides, options, test_after=True)
    assert result.cause == "limit"
    assert 0.0 <= result.test["acc_relational"] <= 1.0 and 0.0 <= result.test["acc_non_relational"] <= 1.0
    test_split = ShapeColorQuery(ShapeColorQuery.Params(data_folder=str(tmp_path / "data"), split="test",
                                                        num_scenes=2, img_size=32))
    assert result.test["samples_aggregated"] == len(test_split)  # every question of the 2 test scenes
    assets = json.loads((result.folder / "assets.json").read_text())["assets"]
    assert "object" in assets["question_vocabulary"]["tokens"] and assets["answers"] == list(ANSWER_NAMES)
    columns = read_csv(result.folder / "validation_statistics.csv")[0].keys()
    assert {"acc_relational", "acc_non_relational", "acc_farthest_color"} <= set(columns)
    assert list(result.folder.glob("visualizations/*/sample_0_ShapeColorQuery.png"))


def test_the_ceiling_bench_writes_compact_deterministic_tables(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("sort_of_clevr_ceiling", ROOT / "bench" / "sort_of_clevr_ceiling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    arguments = ["--data-folder", str(tmp_path / "data"), "--train-scenes", "30", "--margins", "0", "2",
                 "--set", "validation.problem.num_scenes=6", "--set", "testing.problem.num_scenes=8"]
    assert bench.main([*arguments, "--out", str(tmp_path / "a")]) == 0
    assert bench.main([*arguments, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "validation 6 scenes, test 8 scenes" in out and "Answer priors" in out
    for name in ("tie_ceiling.csv", "priors.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with open(tmp_path / "a" / "tie_ceiling.csv") as file:
        ceiling = list(csv.DictReader(file))
    assert list(ceiling[0]) == ["split", "tie_margin", "group", "questions", "kept", "tied", "ambiguous",
                                "reordered", "ceiling", "margin_below_1", "margin_below_2", "margin_below_4"]
    groups = [*QUESTION_TYPE_NAMES[3:], "relational"]
    assert [(r["split"], r["tie_margin"], r["group"]) for r in ceiling] == [
        (split, margin, group) for split in ("validation", "test") for margin in ("0.0", "2.0") for group in groups]
    test = SortOfCLEVR(SortOfCLEVR.Params(data_folder=str(tmp_path / "data"), split="test", num_scenes=8,
                                          img_size=64))
    expected = tie_ceiling(relational_ties(test.scene_layouts(), 64, 2.0))["relational"]
    row = ceiling[-1]
    assert int(row["questions"]) == expected["questions"] and float(row["ceiling"]) == round(expected["ceiling"], 4)
    assert float(row["margin_below_2"]) == 0 and float(row["kept"]) <= 1
    with open(tmp_path / "a" / "priors.csv") as file:
        priors = list(csv.DictReader(file))
    assert list(priors[0]) == ["train_scenes", "split", "group", "accuracy"] and len(priors) == 2 * 10
    assert all(0 <= float(r["accuracy"]) <= 1 for r in priors)

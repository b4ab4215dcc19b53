"""The VQA base (problems/image_text_to_class/vqa_problem.py) on a tiny problem held in memory: answers,
vocabulary and answer set from the training split or another run, padding per batch, statistics."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import torch

from miprometheus.errors import DataError
from miprometheus.problems.assets import write_assets_file
from miprometheus.problems.image_text_to_class.vqa_problem import VQAParams, VQAProblem
from miprometheus.statistics import Measure

ANSWERS = ["yes", "no", "red"]
QUESTIONS = [["is", "it", "red"], ["colour"], ["is", "it"], ["what", "colour", "is", "it"]]
QUESTION_ANSWERS = ["yes", "red", "no", "red"]
TYPES = [0, 1, 0, 2]


class TinyVQA(VQAProblem):
    """Four questions about 2 x 2 images, in memory (a test of the base)."""

    def __init__(self, params: VQAParams, tokens: Sequence[Sequence[str]] = QUESTIONS,
                 answers: Sequence[str] | None = QUESTION_ANSWERS, types: Sequence[int] = TYPES) -> None:
        super().__init__(params)
        self.answer_names = list(ANSWERS)
        self.question_type_names = ["yes_no", "colour", "other"]
        self.question_groups = {"open": ["colour", "other"]}
        self.images = torch.arange(len(tokens), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2) / 10
        self.set_records(tokens, answers, types, source="tiny.json")

    def image_shape(self) -> tuple[int, int, int]:
        return 3, 2, 2

    def batch_images(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices]


def trained(**values) -> TinyVQA:
    problem = TinyVQA(VQAParams(**values))
    problem.use_assets(problem.build_assets())
    return problem


def test_an_unknown_answer_is_a_data_error_naming_it_and_the_file():
    with pytest.raises(DataError, match=r"tiny.json: unknown answer\(s\) \['purple'\].*yes, no, red"):
        TinyVQA(VQAParams(), answers=["yes", "purple", "no", "red"])
    with pytest.raises(DataError, match="4 questions but 3 answers"):
        TinyVQA(VQAParams(), answers=["yes", "no", "red"])
    with pytest.raises(DataError, match="4 questions but 2 question types"):
        TinyVQA(VQAParams(), types=[0, 1])


def test_the_vocabulary_is_built_from_the_training_split_and_words_it_lacks_are_unk():
    train = trained()
    assets = train.build_assets()
    assert assets["answers"] == ANSWERS  # most frequent first, ties by alphabet
    assert assets["question_vocabulary"]["tokens"] == ["<pad>", "<unk>", "is", "it", "colour", "red", "what"]
    other = TinyVQA(VQAParams(), tokens=[["is", "it", "blue"], ["colour"], ["why"], ["what"]])
    other.use_assets(assets)
    assert other.questions[0].tolist() == [2, 3, 1] and other.questions[2].tolist() == [1, 0, 0]
    assert other.default_values["question_vocabulary_size"] == 7 and other.default_values["unk_index"] == 1


def test_questions_are_padded_to_the_longest_of_each_batch():
    problem = trained()
    batch = problem.collate_fn([1, 2])
    assert batch["questions"].tolist() == [[4, 0], [2, 3]]  # "colour" PAD; "is it"
    assert batch["questions_length"].tolist() == [1, 2]
    batch = problem.collate_fn([0, 3, 1])
    assert batch["questions"].shape == (3, 4) and batch["questions_length"].tolist() == [3, 4, 1]
    assert batch["questions"][2].tolist() == [4, 0, 0, 0]
    assert batch["questions_text"] == ["is it red", "what colour is it", "colour"]
    assert batch["answers"].tolist() == [0, 2, 2] and batch["answers_text"] == ["yes", "red", "red"]
    assert batch["question_types"].tolist() == [0, 2, 1]
    assert torch.equal(batch["images"][1], problem.images[3])
    assert problem.default_values["max_question_length"] == 4 and problem.default_values["answer_vocabulary_size"] == 3


def test_collate_before_use_assets_raises_and_a_split_without_answers_cannot_be_batched():
    problem = TinyVQA(VQAParams())
    with pytest.raises(RuntimeError, match="use_assets"):
        problem.collate_fn([0, 1])
    unanswered = TinyVQA(VQAParams(), answers=None)
    with pytest.raises(DataError, match="training split must have answers"):
        unanswered.build_assets()
    unanswered.use_assets(trained().build_assets())
    with pytest.raises(DataError, match="no answers"):
        unanswered.collate_fn([0])


def test_an_empty_question_is_a_data_error():
    problem = TinyVQA(VQAParams(), tokens=[["is"], [], ["it"], ["red"]])
    with pytest.raises(DataError, match="a question has no tokens \\(sample 1\\)"):
        problem.use_assets(problem.build_assets())


def test_vocabulary_from_an_experiment_folder_or_its_assets_file(tmp_path):
    source = trained().build_assets()
    write_assets_file(tmp_path / "assets.json", "TinyVQA", source)
    for location in (tmp_path, tmp_path / "assets.json"):
        transfer = TinyVQA(VQAParams(vocabulary_from=str(location)), tokens=[["new"], ["is"], ["it"], ["what"]])
        assert transfer.build_assets() == source  # not built from its own questions
        transfer.use_assets(transfer.build_assets())
        assert transfer.questions[:, 0].tolist() == [1, 2, 3, 6]
    with pytest.raises(DataError, match="no assets.json there"):
        TinyVQA(VQAParams(vocabulary_from=str(tmp_path / "elsewhere"))).build_assets()
    write_assets_file(tmp_path / "other" / "assets.json", "MNIST", {"permutation": [0, 1]})
    with pytest.raises(DataError, match="holds no question vocabulary and answer set"):
        TinyVQA(VQAParams(vocabulary_from=str(tmp_path / "other"))).build_assets()
    (tmp_path / "broken.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="not an MI-Prometheus assets file"):
        TinyVQA(VQAParams(vocabulary_from=str(tmp_path / "broken.json"))).build_assets()


def test_an_answer_set_that_differs_from_the_problems_is_a_data_error():
    assets = trained().build_assets()
    problem = TinyVQA(VQAParams())
    with pytest.raises(DataError, match=r"answer set \(4 answers\) differs from this problem's \(3\)"):
        problem.use_assets({**assets, "answers": ["yes", "no", "red", "blue"]})
    with pytest.raises(DataError, match="differs"):
        problem.use_assets({**assets, "answers": ["no", "yes", "red"]})  # same answers, another order
    with pytest.raises(DataError, match="the assets hold no 'answers'"):
        problem.use_assets({"question_vocabulary": assets["question_vocabulary"]})


def test_statistics_per_type_and_group_are_absent_from_a_batch_without_such_questions():
    problem = trained()
    batch = problem.collate_fn([0, 2])  # two yes/no questions
    predictions = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])  # "yes" twice: right, then wrong
    stats = problem.statistics(batch, predictions)
    assert stats["acc"] == Measure(1.0, 2.0) and stats["acc_yes_no"] == Measure(1.0, 2.0)
    assert "acc_colour" not in stats and "acc_open" not in stats and stats["batch_size"] == 2.0
    stats = problem.statistics(problem.collate_fn([0, 1, 3]), torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [1.0, 0, 0]]))
    assert stats["acc_open"] == Measure(1.0, 2.0) and stats["acc_colour"] == Measure(1.0, 1.0)
    assert stats["acc_other"] == Measure(0.0, 1.0)
    assert set(stats) <= set(problem.statistic_definitions)
    assert float(problem.loss(batch, predictions)) > 0


def test_question_groups_must_name_known_types():
    class BadGroups(TinyVQA):
        def set_records(self, *args, **kwargs) -> None:
            self.question_groups = {"open": ["colour", "size"]}
            super().set_records(*args, **kwargs)

    with pytest.raises(TypeError, match=r"unknown types \['size'\]"):
        BadGroups(VQAParams())


def test_the_plot_shows_the_image_question_and_top_answers():
    problem = trained()
    batch = problem.collate_fn([3])
    figure = problem.plot(batch, 0, torch.tensor([[0.0, 1.0, 3.0]]))
    assert "Q: what colour is it" in " ".join(t.get_text() for t in figure.texts)

"""The base of every visual question answering problem: one question format, one answer set, grouped accuracy.

A VQA problem answers a question about an image. Whatever the dataset (Sort-of-CLEVR, ShapeColorQuery,
CLEVR, CoGenT), a batch holds:

=====================  ==============================  ================================================
key                    shape, dtype                    content
=====================  ==============================  ================================================
``images``             ``[B, C, H, W]`` float32        the image (pixels in [0, 1]), or its pre-extracted
                                                       feature maps (``C = feature_size``)
``questions``          ``[B, T]`` int64                question token indices, 0 = PAD after the end;
                                                       ``T`` = the longest question of the batch
``questions_length``   ``[B]`` int64                   number of tokens of each question
``answers``            ``[B]`` int64                   answer index (the class a model must predict)
``question_types``     ``[B]`` int64                   index into ``question_type_names``
``questions_text``     list of str                     the question's tokens, joined by spaces
``answers_text``       list of str                     the answer as a word
=====================  ==============================  ================================================

and the model's ``predictions`` are answer logits ``[B, answer_vocabulary_size]``.

The question vocabulary is built on the TRAINING split (PAD = 0, UNK = 1, words by decreasing
frequency; :class:`~miprometheus.problems.vocabulary.Vocabulary`) and handed to every split through the
experiment's assets, with the answer list, so a word that only validation holds is UNK and ``mip test``
encodes as training did. ``vocabulary_from`` reads them from another run instead (an experiment folder
or its ``assets.json``): a model fine-tuned on CoGenT B keeps the vocabulary it learned on A.

A subclass loads its records and calls :meth:`set_records` (tokens, answers, question types), sets
``answer_names`` (the fixed answer set), ``question_type_names`` and ``question_groups`` (e.g.
``relational`` → its types), and implements :meth:`batch_images` (the images of a batch of sample
indices, vectorised: scenes are stored once, not once per question). Statistics, exact over a split:
``acc``, ``acc_<type>`` for every question type and ``acc_<group>`` for every group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError, DataError
from miprometheus.params import param
from miprometheus.problems.assets import assets_of_run
from miprometheus.problems.problem import Batch, Problem, ProblemParams
from miprometheus.problems.vocabulary import Vocabulary, padded_rows
from miprometheus.statistics import StatisticDefinition, mean_of


@dataclasses.dataclass
class VQAParams(ProblemParams):
    """Parameters shared by every VQA problem."""

    vocabulary_from: str | None = param(
        None, "take the question vocabulary and answer set from another training run (its experiment folder "
              "or assets.json) instead of building them from this training split (transfer, fine-tuning)",
        path=True)


class VQAProblem(Problem):
    """Images, tokenised questions and answers; the vocabulary from the training split (see the module doc)."""

    Params = VQAParams
    uses_assets = True

    def __init__(self, params: VQAParams) -> None:
        super().__init__(params)
        #: the fixed set of answers (a model's classes), set by the subclass
        self.answer_names: list[str] = []
        #: the names of the question types (``question_types`` indexes them), set by the subclass
        self.question_type_names: list[str] = []
        #: group name -> names of its question types (``acc_<group>``)
        self.question_groups: dict[str, list[str]] = {}
        self.vocabulary: Vocabulary | None = None
        self.tokens: list[list[str]] = []
        self.answer_words: list[str] | None = None

    # --- records (called by the subclass once its data is loaded) ------------------------------------------
    def set_records(self, tokens: Sequence[Sequence[str]], answers: Sequence[str] | None,
                    question_types: Sequence[int] | torch.Tensor, source: str = "") -> None:
        """The questions as token lists, their answers as words (None: a split without answers) and types.

        ``source`` (a file) is named in errors. An answer outside ``answer_names`` is a DataError.
        """
        self.tokens = [list(t) for t in tokens]
        if answers is not None:
            if len(answers) != len(self.tokens):
                raise DataError(f"{source or self.name}: {len(self.tokens)} questions but {len(answers)} answers")
            known = set(self.answer_names)
            unknown = sorted({a for a in answers if a not in known})
            if unknown:
                raise DataError(f"{source or self.name}: unknown answer(s) {unknown[:5]} (the {len(known)} answers "
                                f"of {self.name} are {', '.join(self.answer_names)})")
        self.answer_words = None if answers is None else list(answers)
        self.question_types_tensor = torch.as_tensor(question_types, dtype=torch.int64).reshape(-1)
        if self.question_types_tensor.numel() != len(self.tokens):
            raise DataError(f"{source or self.name}: {len(self.tokens)} questions but "
                            f"{self.question_types_tensor.numel()} question types")
        self._declare_statistics()

    def _declare_statistics(self) -> None:
        self.statistic_definitions = {
            "acc": StatisticDefinition("mean", "fraction of questions answered correctly"),
            **{f"acc_{name}": StatisticDefinition("mean", f"accuracy on the questions of type {name}")
               for name in self.question_type_names},
            **{f"acc_{group}": StatisticDefinition("mean", f"accuracy on the {group} questions "
                                                           f"({', '.join(types)})")
               for group, types in self.question_groups.items()},
            "batch_size": StatisticDefinition("sum", "number of questions"),
        }
        index = {name: i for i, name in enumerate(self.question_type_names)}
        unknown = sorted({t for types in self.question_groups.values() for t in types if t not in index})
        if unknown:
            raise TypeError(f"{self.name}: question groups name unknown types {unknown}")
        self._group_types = {group: torch.tensor([index[t] for t in types], dtype=torch.int64)
                             for group, types in self.question_groups.items()}

    # --- assets ---------------------------------------------------------------------------------------------
    def build_assets(self) -> dict[str, Any]:
        """The question vocabulary of this training split and the answer set (or ``vocabulary_from``'s)."""
        if self.params.vocabulary_from:
            return assets_of_run(self.params.vocabulary_from, ("question_vocabulary", "answers"), self.name, "VQA",
                                 "question vocabulary and answer set")
        if self.answer_words is None:
            raise DataError(f"{self.name}: the training split must have answers")
        return {"question_vocabulary": Vocabulary.build(self.tokens).to_dict(), "answers": list(self.answer_names)}

    def use_assets(self, assets: Mapping[str, Any]) -> None:
        """Encode this split's questions and answers with the training split's vocabulary and answer set."""
        try:
            self.vocabulary = Vocabulary.from_dict(assets["question_vocabulary"], "question vocabulary")
            answers = list(assets["answers"])
        except KeyError as exc:
            raise DataError(f"{self.name}: the assets hold no {exc}") from None
        if answers != list(self.answer_names):
            raise DataError(f"{self.name}: the training run's answer set ({len(answers)} answers) differs from "
                            f"this problem's ({len(self.answer_names)}): {answers[:6]} vs {self.answer_names[:6]}")
        encoded = [self.vocabulary.encode(t) for t in self.tokens]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)
        if len(encoded) and int(lengths.min()) == 0:
            raise DataError(f"{self.name}: a question has no tokens (sample {int(lengths.argmin())})")
        width = int(lengths.max()) if len(encoded) else 1
        pad = self.vocabulary.pad_index
        # One tensor from padded lists: a tensor per question took 2.6 s for 280k Sort-of-CLEVR questions.
        questions = (torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded], dtype=torch.int64)
                     if encoded else torch.zeros(0, width, dtype=torch.int64))
        self.questions, self.questions_length = questions, lengths
        answer_index = {a: i for i, a in enumerate(self.answer_names)}
        self.answers = (None if self.answer_words is None else
                        torch.tensor([answer_index[a] for a in self.answer_words], dtype=torch.int64))
        self._define()

    def _define(self) -> None:
        channels, height, width = self.image_shape()
        self.output_definitions = {
            "images": DataDefinition((-1, channels, height, width), "float32", self.image_description()),
            "questions": DataDefinition((-1, -1), "int64", "question token indices, 0 = PAD"),
            "questions_length": DataDefinition((-1,), "int64", "tokens of each question"),
            "answers": DataDefinition((-1,), "int64", f"answer index 0..{len(self.answer_names) - 1}"),
            "question_types": DataDefinition((-1,), "int64", "question type index"),
            "questions_text": DataDefinition((-1,), "list", "the question's tokens joined by spaces"),
            "answers_text": DataDefinition((-1,), "list", "the answer as a word"),
            **self.extra_definitions(),
        }
        self.prediction_definitions = {"predictions": DataDefinition((-1, len(self.answer_names)), "float32",
                                                                     "answer logits")}
        assert self.vocabulary is not None
        self.default_values = {
            "question_vocabulary_size": len(self.vocabulary),
            "answer_vocabulary_size": len(self.answer_names),
            "num_classes": len(self.answer_names),
            "pad_index": self.vocabulary.pad_index,
            "unk_index": self.vocabulary.unk_index,
            "max_question_length": int(self.questions.shape[1]),
            "num_channels": channels, "height": height, "width": width,
            **self.extra_values(),
        }

    # --- to implement by a subclass -------------------------------------------------------------------------
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of ``images`` as a batch holds them."""
        raise NotImplementedError

    def image_description(self) -> str:
        return "RGB image in [0, 1]"

    def batch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """The ``images`` of the samples ``indices`` (int64 ``[B]``), float32 ``[B, C, H, W]``."""
        raise NotImplementedError

    def extra_definitions(self) -> dict[str, DataDefinition]:
        """Definitions of problem-specific batch keys (see :meth:`extra_batch`)."""
        return {}

    def extra_batch(self, indices: torch.Tensor) -> dict[str, Any]:
        """Problem-specific batch keys of the samples ``indices``."""
        return {}

    def extra_values(self) -> dict[str, Any]:
        """Problem-specific ``default_values``."""
        return {}

    # --- data -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> int:
        return int(index)

    def collate_fn(self, samples: list[Any]) -> Batch:
        if self.vocabulary is None:
            raise RuntimeError(f"{self.name}: use_assets() must be called before batches are made")
        if self.answers is None:
            raise DataError(f"{self.name}: this split has no answers (it cannot be trained or tested on)")
        # Made where the split's tensors are, whatever the default device (the CPU in a loader).
        indices = torch.as_tensor(samples, dtype=torch.int64, device=self.questions.device)
        questions, lengths = padded_rows(self.questions, self.questions_length, indices)
        return {
            "images": self.batch_images(indices),
            "questions": questions,
            "questions_length": lengths,
            "answers": self.answers[indices],
            "question_types": self.question_types_tensor[indices],
            "questions_text": [" ".join(self.tokens[i]) for i in indices.tolist()],
            "answers_text": [self.answer_words[i] for i in indices.tolist()],  # type: ignore[index]
            **self.extra_batch(indices),
        }

    # --- loss and statistics --------------------------------------------------------------------------------
    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the answer logits, averaged over the questions."""
        return F.cross_entropy(predictions, batch["answers"])

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, Any]:
        """``acc``, ``acc_<type>`` and ``acc_<group>`` (each absent from a batch without such questions)."""
        correct = (predictions.detach().argmax(dim=1) == batch["answers"]).to(torch.float64)
        types = batch["question_types"]
        # Summed per type where the batch is (torch.bincount reads its input's range back to the host on a GPU).
        totals = correct.new_zeros(len(self.question_type_names)).index_add_(0, types, correct)
        counts = correct.new_zeros(len(self.question_type_names)).index_add_(0, types, torch.ones_like(correct))
        stats: dict[str, Any] = {"acc": mean_of(correct.sum(), correct.numel()),
                                 "batch_size": float(correct.numel())}
        # One read of the counts: the types and groups the batch holds (the others are left out of its statistics).
        held = counts.tolist()
        for i, name in enumerate(self.question_type_names):
            if held[i] > 0:
                stats[f"acc_{name}"] = mean_of(totals[i], counts[i])
        for group, members in self._group_types.items():
            if sum(held[i] for i in members.tolist()) > 0:
                stats[f"acc_{group}"] = mean_of(totals[members].sum(), counts[members].sum())
        return stats

    # --- visualisation --------------------------------------------------------------------------------------
    def display_image(self, batch: Batch, index: int) -> torch.Tensor | None:
        """The image of sample ``index`` in [0, 1], ``[3, H, W]``, or None when the batch holds features."""
        image = batch["images"][index]
        return image.clamp(0.0, 1.0) if image.shape[0] == 3 else None

    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Sample ``index``: the image, the question, the answer, and the top-3 predicted answers."""
        from miprometheus.plotting import vqa_figure

        probabilities = None if predictions is None else torch.softmax(predictions[index].detach().float(), dim=0)
        return vqa_figure(self.display_image(batch, index), batch["questions_text"][index],
                          batch["answers_text"][index], probabilities, self.answer_names,
                          f"{self.name}, sample {index}")

    def config_error(self, message: str) -> ConfigError:
        return ConfigError(f"problem {self.name}: {message}")


__all__ = ["VQAParams", "VQAProblem"]

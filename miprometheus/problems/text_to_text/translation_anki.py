"""TranslationAnki: sentence pairs of the manythings.org / Tatoeba files, tokenised, split and scored with BLEU.

The corpus (``anki_format``) is read from ``file``, by default ``<data_folder>/<language>-eng.zip`` or the
extracted ``<data_folder>/<language>.txt``; a missing file is downloaded when ``download`` is set, or written by
the synthetic grammar (``synthetic_corpus``) when ``synthetic`` is. Then, in this order:

1. the reference preprocessing of both sides (``normalize``), the first two columns kept;
2. the filters: both sides shorter than ``max_sequence_length`` tokens, the English side starting with one of
   ``eng_prefixes`` (each optional);
3. a split seeded by ``dataset_seed`` only (``dataset_generator``): ``test_fraction`` of the pairs, then
   ``validation_fraction``, the rest for training; the same pairs for every run, whatever its seed.
   ``split: all`` takes every pair (a file made for testing, e.g. held-out combinations);
4. ``reverse`` swaps the sides (the other language into English).

The vocabularies (PAD = 0, UNK = 1, SOS = 2, EOS = 3, then the words by decreasing frequency) are built on the
TRAINING split and reach every split and ``mip test`` through the experiment's assets, so indices mean the
same everywhere and a word the training split never held is UNK (the original built one per split).

A batch (no sorting by length; models pack or mask):

==================  =====================  ==================================================================
``inputs``          ``[B, S]`` int64        source token indices, the words then EOS, PAD (0) after
``inputs_length``   ``[B]`` int64           tokens of each source, EOS included
``targets``         ``[B, T]`` int64        target token indices, the words then EOS, PAD after
``targets_length``  ``[B]`` int64           tokens of each target, EOS included
``inputs_text``     list of str             the source's words (normalised), joined by spaces
``targets_text``    list of str             the target's words
==================  =====================  ==================================================================

The model's ``predictions`` are logits ``[B, T', output_vocabulary_size]``; a model may also output
``predicted_tokens`` ``[B, T']`` (the tokens its decoding chose: beam search's are not the argmax of each step)
and ``attention`` ``[B, T', S]``. Predictions shorter than the targets count as a uniform distribution (and a
wrong token) at the missing positions; longer ones are scored against PAD, which the loss ignores.

Statistics, exact over a split: ``token_accuracy`` (output token = target token at the same position, over the
target's tokens, EOS included), ``sentence_accuracy`` (the EOS-cut output equals the target) and ``bleu``:
corpus BLEU on a 0-1 scale by sacreBLEU (4-gram, ``13a`` tokenisation, its default ``exp`` smoothing, one
reference) on the detokenised outputs cut at their first EOS; the matched and total n-grams and lengths are
summed over the split's batches, so the figure is the corpus BLEU of the whole split, not a mean of batches.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError, DataError
from miprometheus.params import MAX_SEQUENCE_LENGTH, param
from miprometheus.problems.assets import assets_of_run
from miprometheus.problems.cache import file_lock
from miprometheus.problems.dataset_seeding import dataset_generator
from miprometheus.problems.problem import Batch, Problem, ProblemParams
from miprometheus.problems.shared_arrays import shared_asset
from miprometheus.problems.text_to_text import anki_format
from miprometheus.problems.text_to_text.synthetic_corpus import written_by_older_grammar as _older_synthetic
from miprometheus.problems.vocabulary import Vocabulary, padded_rows
from miprometheus.registry import register_problem
from miprometheus.statistics import Counts, StatisticDefinition, mean_of

SPLITS = ("training", "validation", "test", "all")
_LANGUAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@functools.lru_cache(maxsize=1)
def _bleu_metric() -> Any:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="13a", smooth_method="exp")
    metric.corpus_score(["a"], [["a"]])  # the signature names the number of references once a score was computed
    return metric


def bleu_counts(hypotheses: list[str], references: list[str]) -> tuple[float, ...]:
    """sacreBLEU's sufficient statistics of a set of sentences: 4 matched n-gram counts, 4 totals, the output and
    reference lengths."""
    score = _bleu_metric().corpus_score(hypotheses, [references])
    return (*map(float, score.counts), *map(float, score.totals), float(score.sys_len), float(score.ref_len))


def bleu_from_counts(counts: Any) -> float:
    """Corpus BLEU (0-1) from summed :func:`bleu_counts` (sacreBLEU's formula and ``exp`` smoothing)."""
    from sacrebleu.metrics import BLEU

    counts = [float(c) for c in counts]
    if counts[9] == 0:
        return 0.0
    score = BLEU.compute_bleu([int(c) for c in counts[0:4]], [int(c) for c in counts[4:8]], int(counts[8]),
                              int(counts[9]), smooth_method="exp")
    return min(1.0, float(score.score) / 100.0)  # sacreBLEU's 100.00000000000004 of a perfect output is 1


def bleu_signature() -> str:
    return str(_bleu_metric().get_signature())


@dataclasses.dataclass(kw_only=True)
class TranslationAnkiParams(ProblemParams):
    data_folder: str = param(doc="folder of the corpus: <language>-eng.zip or the extracted <language>.txt (a "
                                 "missing file is downloaded there, or written by the synthetic grammar)", path=True)
    language: str = param("fra", "the other language's code, as in the file names (fra: fra-eng.zip, fra.txt)")
    file: str | None = param(None, "the corpus file itself (a zip or a .txt); null: <data_folder>/<language>-eng.zip, "
                                   "else <data_folder>/<language>.txt", path=True)
    download: bool = param(True, "download the official <language>-eng.zip from manythings.org when it is missing")
    synthetic: bool = param(False, "when the file is missing, write the synthetic corpus of "
                                   "miprometheus.problems.text_to_text.synthetic_corpus instead (<language>-eng.zip "
                                   "and <language>_heldout-eng.zip, without the _heldout suffix in language)")
    split: Literal["training", "validation", "test", "all"] = param(
        "training", "which pairs: training, validation or test of the seeded split, or all of the file's pairs")
    validation_fraction: float = param(0.1, "fraction of the (filtered) pairs in the validation split")
    test_fraction: float = param(0.1, "fraction of the (filtered) pairs in the test split")
    dataset_seed: int = param(0, "seed of the split: the same pairs for every run of this seed")
    normalize: bool = param(True, "the reference preprocessing (ASCII, lower case, punctuation spaced); false: "
                                  "the sentences as written, split on white space")
    max_sequence_length: int | None = param(10, "keep pairs whose two sides have fewer than this many tokens "
                                                "(punctuation counts); null: no length filter",
                                                min=2, max=MAX_SEQUENCE_LENGTH)
    eng_prefixes: list[str] | None = param(None, "keep pairs whose English side starts with one of these "
                                                 "(normalised) prefixes, e.g. the tutorial's 'i am ', 'he is', ...; "
                                                 "null: no prefix filter")
    reverse: bool = param(False, "translate into English (other language -> English) instead of from it")
    min_count: int = param(1, "words seen fewer times in the training split are UNK", min=1)
    vocabulary_from: str | None = param(None, "take the vocabularies from another training run (its experiment "
                                              "folder or assets.json) instead of building them from this split",
                                        path=True)


@register_problem
class TranslationAnki(Problem):
    """Bilingual sentence pairs of the Anki format, with vocabularies from the training split (see the module)."""

    Params = TranslationAnkiParams
    uses_assets = True

    def __init__(self, params: TranslationAnkiParams) -> None:
        super().__init__(params)
        self._validate(params)
        self.file = self.corpus_file()
        pairs = shared_asset(self.file, anki_format.pairs_loader(params.language, params.normalize))
        kept = self.filter(pairs)
        if not kept:
            raise DataError(f"{self.file}: no pair of its {len(pairs)} passes the filters (max_sequence_length "
                            f"{params.max_sequence_length}, eng_prefixes {params.eng_prefixes})")
        chosen = self.choose_split(kept)
        if not chosen:
            raise DataError(f"{self.file}: the {params.split} split of its {len(kept)} kept pairs is empty "
                            f"(validation_fraction {params.validation_fraction}, test_fraction {params.test_fraction})")
        if params.reverse:
            chosen = [(other, english, line) for english, other, line in chosen]
        self.source_tokens = [source.split() for source, _, _ in chosen]
        self.target_tokens = [target.split() for _, target, _ in chosen]
        self.lines = [line for _, _, line in chosen]
        self.num_read, self.num_kept = len(pairs), len(kept)
        self.input_vocabulary: Vocabulary | None = None
        self.output_vocabulary: Vocabulary | None = None
        self.statistic_definitions = {
            "token_accuracy": StatisticDefinition("mean", "output tokens equal to the target's at the same position, "
                                                          "over the target tokens (EOS included)"),
            "sentence_accuracy": StatisticDefinition("mean", "outputs (cut at EOS) equal to their target"),
            "bleu": StatisticDefinition("counts", "corpus BLEU, 0-1, of the detokenised EOS-cut outputs "
                                                  f"(sacreBLEU {bleu_signature()})"),
            "batch_size": StatisticDefinition("sum", "number of sentence pairs"),
        }

    # --- parameters and files ----------------------------------------------------------------------------------
    def _validate(self, params: TranslationAnkiParams) -> None:
        if not _LANGUAGE.match(params.language):
            raise self.config_error(f"language must be a code of letters, digits and _ (e.g. fra), "
                                    f"got {params.language!r}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(params, name)
            if not 0.0 <= value < 1.0:
                raise self.config_error(f"{name} must be in [0, 1), got {value}")
        if params.validation_fraction + params.test_fraction >= 1.0:
            raise self.config_error("validation_fraction + test_fraction must leave pairs for training, got "
                                    f"{params.validation_fraction} + {params.test_fraction}")
        if params.eng_prefixes is not None and (not params.eng_prefixes or not all(params.eng_prefixes)):
            raise self.config_error("eng_prefixes must be a list of non-empty prefixes, or null")

    def config_error(self, message: str) -> ConfigError:
        return ConfigError(f"problem {self.name}: {message}")

    def corpus_file(self) -> Path:
        """The corpus file, downloaded or written by the synthetic grammar when missing (and allowed)."""
        params = self.params
        folder = Path(os.path.expanduser(params.data_folder))
        if params.file is not None:
            path = Path(os.path.expanduser(params.file))
            if not path.is_file():
                raise DataError(f"{self.name}: the corpus file {path} does not exist")
            return path
        archive = folder / anki_format.archive_name(params.language)
        text = folder / anki_format.text_name(params.language)
        if archive.is_file() and not (params.synthetic and _older_synthetic(archive)):
            return archive
        if text.is_file():
            return text
        if params.synthetic:
            from miprometheus.problems.text_to_text.synthetic_corpus import write_synthetic_corpus

            base = params.language.removesuffix("_heldout")
            with file_lock(folder / f"{base}-eng.zip"):  # one grid worker writes, the others wait and read
                if not archive.is_file() or _older_synthetic(archive):  # an older grammar's corpus: rewritten
                    write_synthetic_corpus(folder, base)
            if archive.is_file():
                return archive
            raise DataError(f"{self.name}: the synthetic corpus written into {folder} has no {archive.name} "
                            f"(the grammar writes {base}-eng.zip and {base}_heldout-eng.zip)")
        if not params.download:
            raise DataError(f"{self.name}: neither {archive} nor {text} exists, and downloading is disabled "
                            f"(download: false); get {archive.name} from https://www.manythings.org/anki/")
        return anki_format.download(params.language, folder)

    def filter(self, pairs: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """The pairs both of whose sides are shorter than ``max_sequence_length`` tokens and whose English side
        starts with one of ``eng_prefixes`` (each filter optional)."""
        limit, prefixes = self.params.max_sequence_length, self.params.eng_prefixes
        kept = []
        for english, other, line in pairs:
            if limit is not None and (len(english.split()) >= limit or len(other.split()) >= limit):
                continue
            if prefixes is not None and not english.startswith(tuple(prefixes)):
                continue
            kept.append((english, other, line))
        return kept

    def choose_split(self, kept: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        """This split's pairs, in the order of a permutation drawn from ``dataset_seed`` alone."""
        params = self.params
        if params.split == "all":
            return list(kept)
        order = torch.randperm(len(kept), generator=dataset_generator(params.dataset_seed, "TranslationAnki",
                                                                      params.language)).tolist()
        n_test = round(params.test_fraction * len(kept))
        n_validation = round(params.validation_fraction * len(kept))
        ranges = {"test": (0, n_test), "validation": (n_test, n_test + n_validation),
                  "training": (n_test + n_validation, len(kept))}
        start, stop = ranges[params.split]
        return [kept[i] for i in order[start:stop]]

    # --- assets -------------------------------------------------------------------------------------------------
    def build_assets(self) -> dict[str, Any]:
        """The source and target vocabularies of this training split (or ``vocabulary_from``'s)."""
        if self.params.vocabulary_from:
            return assets_of_run(self.params.vocabulary_from, ("input_vocabulary", "output_vocabulary"), self.name,
                                 "translation", "input and output vocabularies")
        return {"input_vocabulary": Vocabulary.build(self.source_tokens, True, self.params.min_count).to_dict(),
                "output_vocabulary": Vocabulary.build(self.target_tokens, True, self.params.min_count).to_dict()}

    def use_assets(self, assets: Mapping[str, Any]) -> None:
        """Encode this split with the training split's vocabularies (words then EOS, PAD-padded tensors)."""
        try:
            self.input_vocabulary = Vocabulary.from_dict(assets["input_vocabulary"], "input vocabulary")
            self.output_vocabulary = Vocabulary.from_dict(assets["output_vocabulary"], "output vocabulary")
        except KeyError as exc:
            raise DataError(f"{self.name}: the assets hold no {exc}") from None
        for which, vocabulary in (("input", self.input_vocabulary), ("output", self.output_vocabulary)):
            if "<sos>" not in vocabulary or "<eos>" not in vocabulary:
                raise DataError(f"{self.name}: the {which} vocabulary has no SOS/EOS tokens (not a translation one)")
        self.inputs, self.inputs_length = self._encode(self.input_vocabulary, self.source_tokens)
        self.targets, self.targets_length = self._encode(self.output_vocabulary, self.target_tokens)
        self._define()

    @staticmethod
    def _encode(vocabulary: Vocabulary, sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        eos, pad = vocabulary.eos_index, vocabulary.pad_index
        encoded = [vocabulary.encode(tokens) + [eos] for tokens in sentences]
        width = max(len(e) for e in encoded)
        return (torch.tensor([e + [pad] * (width - len(e)) for e in encoded], dtype=torch.int64),
                torch.tensor([len(e) for e in encoded], dtype=torch.int64))

    def _define(self) -> None:
        assert self.input_vocabulary is not None and self.output_vocabulary is not None
        out = len(self.output_vocabulary)
        self.output_definitions = {
            "inputs": DataDefinition((-1, -1), "int64", "source token indices then EOS, 0 = PAD"),
            "inputs_length": DataDefinition((-1,), "int64", "tokens of each source, EOS included"),
            "targets": DataDefinition((-1, -1), "int64", "target token indices then EOS, 0 = PAD"),
            "targets_length": DataDefinition((-1,), "int64", "tokens of each target, EOS included"),
            "inputs_text": DataDefinition((-1,), "list", "the source's words joined by spaces"),
            "targets_text": DataDefinition((-1,), "list", "the target's words joined by spaces"),
        }
        self.prediction_definitions = {"predictions": DataDefinition((-1, -1, out), "float32",
                                                                     "logits of each output step")}
        limit = self.params.max_sequence_length
        longest = max(int(self.inputs.shape[1]), int(self.targets.shape[1]))
        self.default_values = {
            "input_vocabulary_size": len(self.input_vocabulary),
            "output_vocabulary_size": out,
            "pad_index": self.output_vocabulary.pad_index,
            "unk_index": self.output_vocabulary.unk_index,
            "sos_index": self.output_vocabulary.sos_index,
            "eos_index": self.output_vocabulary.eos_index,
            # sentences have fewer than `limit` tokens: with EOS at most `limit`
            "max_sequence_length": limit if limit is not None else longest,
        }

    # --- data ---------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.source_tokens)

    def __getitem__(self, index: int) -> int:
        return int(index)

    def collate_fn(self, samples: list[Any]) -> Batch:
        if self.input_vocabulary is None:
            raise RuntimeError(f"{self.name}: use_assets() must be called before batches are made")
        # Made where the split's tensors are, whatever the default device (the CPU in a loader).
        indices = torch.as_tensor(samples, dtype=torch.int64, device=self.inputs.device)
        inputs, inputs_length = padded_rows(self.inputs, self.inputs_length, indices)
        targets, targets_length = padded_rows(self.targets, self.targets_length, indices)
        return {
            "inputs": inputs,
            "inputs_length": inputs_length,
            "targets": targets,
            "targets_length": targets_length,
            "inputs_text": [" ".join(self.source_tokens[i]) for i in indices.tolist()],
            "targets_text": [" ".join(self.target_tokens[i]) for i in indices.tolist()],
        }

    # --- loss and statistics ------------------------------------------------------------------------------------
    def aligned(self, batch: Batch, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and targets over the same number of steps (missing prediction steps: zero logits; missing
        target steps: PAD)."""
        targets = batch["targets"]
        steps, width = predictions.shape[1], targets.shape[1]
        if steps < width:
            predictions = F.pad(predictions, (0, 0, 0, width - steps))
        elif steps > width:
            targets = F.pad(targets, (0, steps - width), value=self.output_vocabulary.pad_index)  # type: ignore[union-attr]
        return predictions, targets

    def loss(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each target token (EOS included, PAD ignored), averaged over the tokens."""
        predictions, targets = self.aligned(batch, predictions)
        pad = self.output_vocabulary.pad_index  # type: ignore[union-attr]
        return F.cross_entropy(predictions.transpose(1, 2), targets, ignore_index=pad)

    def loss_count(self, batch: Batch, predictions: torch.Tensor) -> float:
        return float(batch["targets_length"].sum())

    def output_tokens(self, batch: Batch, predictions: torch.Tensor) -> torch.Tensor:
        """The tokens the model output: its ``predicted_tokens`` when it gives them, else each step's argmax."""
        tokens = batch.get("predicted_tokens")
        return tokens if tokens is not None else predictions.argmax(dim=-1)

    def output_words(self, tokens: torch.Tensor) -> list[list[str]]:
        """Each output's words up to its first EOS (EOS, PAD and SOS left out; UNK kept as ``<unk>``)."""
        vocabulary = self.output_vocabulary
        assert vocabulary is not None
        eos = vocabulary.eos_index
        words = []
        for row in tokens.tolist():
            cut = row.index(eos) if eos in row else len(row)
            words.append(vocabulary.decode(row[:cut]))
        return words

    def statistics(self, batch: Batch, predictions: torch.Tensor) -> dict[str, Any]:
        tokens = self.output_tokens(batch, predictions)
        targets = batch["targets"]
        width = targets.shape[1]
        aligned = tokens[:, :width]
        if aligned.shape[1] < width:
            aligned = F.pad(aligned, (0, width - aligned.shape[1]), value=-1)
        real = targets != self.output_vocabulary.pad_index  # type: ignore[union-attr]
        correct = ((aligned == targets) & real).sum()
        outputs = self.output_words(tokens)
        references = [text.split() for text in batch["targets_text"]]
        exact = sum(o == r for o, r in zip(outputs, references, strict=True))
        counts = bleu_counts([anki_format.detokenize(o) for o in outputs],
                             [anki_format.detokenize(r) for r in references])
        return {"token_accuracy": mean_of(correct, real.sum()),
                "sentence_accuracy": mean_of(exact, len(outputs)),
                "bleu": Counts(counts, bleu_from_counts),
                "batch_size": float(len(outputs))}

    def describe_samples(self, batch: Batch, predictions: torch.Tensor) -> list[str]:
        """Source, reference and output of each sample, detokenised (``samples.txt`` of a test)."""
        outputs = self.output_words(self.output_tokens(batch, predictions))
        return [f"source:    {anki_format.detokenize(source.split())}\n"
                f"reference: {anki_format.detokenize(target.split())}\n"
                f"output:    {anki_format.detokenize(output)}"
                for source, target, output in zip(batch["inputs_text"], batch["targets_text"], outputs, strict=True)]

    # --- visualisation ------------------------------------------------------------------------------------------
    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """The attention matrix of sample ``index`` (output words x source words) when the model gives
        ``attention``, with the source, the reference and the output in the title; else those three texts."""
        from miprometheus.plotting import new_figure, to_numpy

        source = batch["inputs_text"][index].split() + ["<eos>"]
        reference = batch["targets_text"][index]
        output: list[str] = []
        if predictions is not None:
            row = self.output_tokens(batch, predictions)[index:index + 1]
            output = self.output_words(row)[0]
        title = (f"source: {anki_format.detokenize(source[:-1])}"
                 f"\nreference: {anki_format.detokenize(reference.split())}"
                 + (f"\noutput: {anki_format.detokenize(output)}" if predictions is not None else ""))
        attention = batch.get("attention")
        if attention is None or predictions is None:
            figure = new_figure(6, 2)
            axes = figure.add_subplot()
            axes.axis("off")
            axes.text(0.0, 0.5, title, va="center", family="monospace")
            return figure
        rows = output + ["<eos>"]
        matrix = to_numpy(attention[index])[:len(rows), :len(source)]
        figure = new_figure(max(4.0, 0.45 * len(source) + 2), max(3.5, 0.4 * len(rows) + 2))
        axes = figure.add_subplot()
        image = axes.matshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0)
        axes.set_xticks(range(len(source)), source, rotation=90)
        axes.set_yticks(range(matrix.shape[0]), rows[:matrix.shape[0]])
        axes.set_xlabel("source words")
        axes.set_ylabel("output words")
        axes.set_title(title, fontsize=8, loc="left")
        figure.colorbar(image, ax=axes, shrink=0.8, label="attention")
        return figure


__all__ = ["TranslationAnki", "TranslationAnkiParams", "bleu_counts", "bleu_from_counts"]

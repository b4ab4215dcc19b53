"""CLEVR v1.0 and CLEVR-CoGenT: questions about rendered 3D scenes, read from the official JSON and PNG files.

Layout (the official archives of Johnson et al. 2017, unzipped), ``data_folder`` holding::

    questions/CLEVR_<split>_questions.json       {"info": {...}, "questions": [{question, answer, ...}, ...]}
    images/<split>/CLEVR_<split>_NNNNNN.png      480 x 320, RGBA: converted to RGB

(CoGenT: the splits trainA, valA, valB, testA, testB; ``CLEVR_valB_questions.json``, ``images/valB/``). The
image of a question is its ``image_filename`` in ``images/<split>/``, which also serves CoGenT (the original
looked for ``CLEVR-CoGenT_<split>_...`` files, which do not exist). ``data_folder`` may be named anything.

Questions. Each question is tokenised by :func:`tokenize`, a regular expression rather than the original's
NLTK ``word_tokenize`` (no NLTK data to install): lower-cased, words and punctuation as separate tokens. The
original kept case ("Are" and "are" were two words) and NLTK splits contractions; CLEVR's generated questions
have none, so apart from case the tokens are NLTK's. The vocabulary is built from the training split (PAD 0,
UNK 1: a word that only validation holds is UNK, never appended as the original did) by the VQA base, which
also carries it to other runs (``vocabulary_from``: a CoGenT-B fine-tune keeps the vocabulary learned on A).
The answers are the 28 of CLEVR in a fixed order (:data:`ANSWERS`). Each question's type is the
``index_to_family`` table's (:data:`FAMILY_TYPES`: 90 families -> 13 types), grouped into the 5 categories of
:data:`QUESTION_CATEGORIES`; the statistics are ``acc``, ``acc_<type>`` and ``acc_<category>`` (``acc_count``
and ``acc_exist`` are both a type and a category: one column each), exact over a split.

Parsing 700,000 questions takes seconds, so the parsed records are cached (``cache_folder``, default
``<data_folder>/generated_files``, or ``~/.cache/miprometheus/clevr`` when ``data_folder`` is read-only), keyed by
the JSON file's path, size and modification time: a grid parses each file once, an edited file is parsed again.

Images. ``images: raw`` reads each batch's PNGs with Pillow when the batch is made (70,000 images do not
sit in memory), converts them to RGB and resizes them to ``resize`` (default [128, 128], the RN paper's size;
null keeps 320 x 480), float in [0, 1]; a small read-through cache keeps the last ``image_cache_size``
decoded images (validation reads questions in file order, about ten per image). That every image exists is
checked once, at construction, against one listing of the image folder. ``images: features`` reads the rows of
the split's feature file written by ``mip extract-features`` (``features_file``, default
``<data_folder>/features/<feature_extractor>/<split>.npy``, memory-mapped; see :mod:`.clevr_features`), e.g.
ResNet-101 layer3 maps [1024, 14, 14]; num_channels, height, width and feature_size come from its header, and
every split of a run must come from the same extractor (checked against the training split's assets).

The test splits' answers are withheld by the authors: ``split: test`` (testA, testB) is refused at
construction; the ViGIL experiments test on ``val`` and validate on the last 10% of ``train``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from miprometheus.data import DataDefinition
from miprometheus.errors import DataError
from miprometheus.layout import FEATURES_DIR
from miprometheus.params import MAX_IMAGE_SIDE, param
from miprometheus.problems.cache import cached_dataset
from miprometheus.problems.image_text_to_class.clevr_features import FeatureFile, read_features
from miprometheus.problems.image_text_to_class.vqa_problem import VQAParams, VQAProblem
from miprometheus.problems.image_transforms import resize, to_float
from miprometheus.registry import register_problem

logger = logging.getLogger("miprometheus.clevr")

#: the 28 answers of CLEVR, in a fixed order: yes/no, the counts, colours, materials, shapes, sizes
ANSWERS = ("yes", "no", *(str(n) for n in range(11)),
           "gray", "blue", "brown", "yellow", "red", "green", "purple", "cyan",
           "rubber", "metal", "cube", "sphere", "cylinder", "small", "large")

#: question type -> the question families (``question_family_index``) of that type (the original's
#: ``index_to_family`` table)
TYPE_FAMILIES: dict[str, tuple[int, ...]] = {
    "equal_integer": (0, 3, 6),
    "less_than": (1, 4, 7),
    "greater_than": (2, 5, 8),
    "equal_size": (9, 13, 14, 15),
    "equal_color": (10, 16, 17, 18),
    "equal_material": (11, 19, 20, 21),
    "equal_shape": (12, 22, 23, 24),
    "count": (25, 31, 40, 41, 42, 43, 48, 49, 50, 51, *range(64, 73), 78, 84),
    "exist": (26, 36, 37, 38, 39, 44, 45, 46, 47, 73, 79, 85),
    "query_size": (27, 32, 55, 58, 61, 74, 80, 89),
    "query_shape": (28, 35, 54, 57, 60, 77, 83, 86),
    "query_color": (29, 33, 52, 59, 62, 75, 81, 88),
    "query_material": (30, 34, 53, 56, 63, 76, 82, 87),
}
QUESTION_TYPES = tuple(TYPE_FAMILIES)
_FAMILY_TYPE = {family: name for name, families in TYPE_FAMILIES.items() for family in families}
#: question family index (0..89) -> its type
FAMILY_TYPES: tuple[str, ...] = tuple(_FAMILY_TYPE[family] for family in range(90))
#: the 5 categories of question types
QUESTION_CATEGORIES: dict[str, list[str]] = {
    "count": ["count"],
    "exist": ["exist"],
    "compare_integer": ["equal_integer", "less_than", "greater_than"],
    "query_attribute": ["query_size", "query_shape", "query_color", "query_material"],
    "compare_attribute": ["equal_size", "equal_color", "equal_material", "equal_shape"],
}
#: keys every question of a split with answers must have (the others of the official files are not used)
REQUIRED_KEYS = ("question", "answer", "image_filename", "question_family_index")

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: raised whenever :func:`tokenize` or the records change, so that older caches are not used
RECORDS_FORMAT = 1


def tokenize(text: str) -> list[str]:
    """A question as tokens: lower-case words and numbers, each punctuation mark a token of its own.

    ``"What size is the cylinder; is it red?"`` -> ``what size is the cylinder ; is it red ?``.
    """
    return _TOKEN.findall(text.lower())


def _type_index() -> torch.Tensor:
    """Question family index -> index into :data:`QUESTION_TYPES`."""
    position = {name: i for i, name in enumerate(QUESTION_TYPES)}
    return torch.tensor([position[t] for t in FAMILY_TYPES], dtype=torch.int64)


def parse_questions(path: Path) -> dict[str, Any]:
    """The records of an official questions file with answers: tokens (joined by spaces), answers, images, families.

    Malformed JSON (with its line and column), a question without a required key or with a value of the wrong
    type are DataErrors naming the file and the question's position.
    """
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the CLEVR questions file {path}: {exc}") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise DataError(f"{path}: not a CLEVR questions file (expected {{\"info\": {{...}}, \"questions\": [...]}})")
    texts: list[str] = []
    answers: list[str] = []
    image_ids: list[int] = []
    image_files: dict[str, int] = {}
    families: list[int] = []
    for position, question in enumerate(questions):
        if not isinstance(question, dict):
            raise DataError(f"{path}: question {position} is not a JSON object")
        missing = [key for key in REQUIRED_KEYS if key not in question]
        if missing:
            raise DataError(f"{path}: question {position} (question_index {question.get('question_index', '?')}) has "
                            f"no key {', '.join(repr(k) for k in missing)} (every question needs "
                            f"{', '.join(REQUIRED_KEYS)})")
        text, answer, image, family = (question[key] for key in REQUIRED_KEYS)
        if not (isinstance(text, str) and isinstance(answer, str) and isinstance(image, str)):
            raise DataError(f"{path}: question {position}: 'question', 'answer' and 'image_filename' must be strings")
        if not isinstance(family, int) or isinstance(family, bool) or not 0 <= family < len(FAMILY_TYPES):
            raise DataError(f"{path}: question {position}: question_family_index must be an integer 0..89, "
                            f"got {family!r}")
        texts.append(" ".join(tokenize(text)))
        answers.append(answer)
        image_ids.append(image_files.setdefault(image, len(image_files)))
        families.append(family)
    return {"texts": texts, "answers": answers, "image_files": list(image_files),
            "image_ids": torch.tensor(image_ids, dtype=torch.int32),
            "families": torch.tensor(families, dtype=torch.int64)}


def read_image(path: Path) -> torch.Tensor:
    """A PNG (or any image Pillow reads) as RGB ``uint8`` [3, H, W]; an alpha channel is dropped."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"CLEVR image not found: {path}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise DataError(f"cannot read the CLEVR image {path}: {exc}") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _default_cache_folder(root: Path) -> Path:
    """``<data_folder>/generated_files``, or a folder in the user's cache when the data folder is read-only."""
    folder = root / "generated_files"
    if os.access(folder if folder.is_dir() else root, os.W_OK):
        return folder
    return Path("~/.cache/miprometheus/clevr").expanduser()


@register_problem
class CLEVR(VQAProblem):
    """CLEVR v1.0 (Johnson et al. 2017): 28 answers to questions about rendered 3D scenes (official JSON + PNG).

    Batches as every VQA problem (``images``, ``questions`` [B, T] int64, ``questions_length``, ``answers``,
    ``question_types``, texts) plus ``image_filenames``. ``images: raw``: RGB [B, 3, H, W] in [0, 1], resized to
    ``resize`` (default 128 x 128); ``images: features``: pre-extracted maps from ``mip extract-features`` (e.g.
    ResNet-101 layer3, [B, 1024, 14, 14]). Splits train (699,989 questions) and val (149,991); test has no
    answers and is refused. Statistics acc, acc_<type> (13 types) and acc_<category> (count, exist,
    compare_integer, query_attribute, compare_attribute).
    """

    #: the splits of the dataset, and those whose answers are withheld
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    TEST_SPLITS: ClassVar[tuple[str, ...]] = ("test",)
    #: what to test on instead of a withheld test split
    TEST_ADVICE: ClassVar[str] = "use split 'val' as the test set (and the last 10% of 'train' for validation)"
    ARCHIVE: ClassVar[str] = "https://dl.fbaipublicfiles.com/clevr/CLEVR_v1.0.zip (18 GB)"

    @dataclasses.dataclass(kw_only=True)
    class Params(VQAParams):
        """Parameters of the CLEVR problem."""

        data_folder: str = param(doc="folder holding questions/ and images/ of the unzipped "
                                                      "official archive (any name)", path=True)
        split: Literal["train", "val", "test"] = param("train", "train or val (test: answers withheld, refused)")
        images: Literal["raw", "features"] = param("raw", "raw: the PNG images; features: the split's feature file "
                                                          "written by mip extract-features")
        resize: list[int] | None = param(factory=lambda: [128, 128], doc="images: raw: [height, width] of the "
                                         "images in a batch (default [128, 128]); null: the files' 320 x 480",
                                         min=1, max=MAX_IMAGE_SIDE)
        features_file: str | None = param(None, "images: features: the split's .npy feature file; null: "
                                                "<data_folder>/features/<feature_extractor>/<split>.npy", path=True)
        feature_extractor: str = param("resnet101_layer3", "images: features: the folder of the features under "
                                                           "<data_folder>/features/ (mip extract-features' "
                                                           "output.name)")
        cache_folder: str | None = param(None, "where the parsed questions are cached; null: "
                                               "<data_folder>/generated_files (or ~/.cache/miprometheus/clevr when "
                                               "data_folder is read-only)", path=True)
        image_cache_size: int = param(128, "images: raw: decoded images kept in memory (read-through, per process)",
                                      min=0)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._check_params()
        self.split = params.split
        self.root = Path(os.path.expanduser(str(params.data_folder)))
        self.answer_names = list(ANSWERS)
        self.question_type_names = list(QUESTION_TYPES)
        self.question_groups = {name: list(types) for name, types in QUESTION_CATEGORIES.items()}

        self.questions_file = self.root / "questions" / f"CLEVR_{self.split}_questions.json"
        records = self._records()
        self.set_records([text.split(" ") if text else [] for text in records["texts"]], records["answers"],
                         _type_index()[records["families"]], source=str(self.questions_file))
        self.image_files: list[str] = list(records["image_files"])
        self.image_ids = records["image_ids"].to(torch.int64)  # question -> index into image_files
        self.image_folder = self.root / "images" / self.split
        self._image_cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.features: FeatureFile | None = None
        if params.images == "raw":
            self._check_images()
        else:
            self._open_features()

    # --- construction ---------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        params = self.params
        if params.split not in self.SPLITS:
            raise self.config_error(f"split must be one of {', '.join(self.SPLITS)}, got {params.split!r}")
        if params.split in self.TEST_SPLITS:
            raise self.config_error(f"split '{params.split}' has no answers (the dataset's authors withhold the test "
                                    f"answers), so it can be neither trained nor tested on: {self.TEST_ADVICE}")
        if params.images not in ("raw", "features"):
            raise self.config_error(f"images must be raw or features, got {params.images!r}")
        size = params.resize
        if size is not None and not (isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2
                                     and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise self.config_error(f"resize must be [height, width] with two positive integers, or null; got {size!r}")

    def _records(self) -> dict[str, Any]:
        """The parsed questions file, from its cache when the file has not changed since it was parsed."""
        path = self.questions_file
        if not path.is_file():
            raise DataError(f"{self.name} {self.split} questions not found: {path}. Download {self.ARCHIVE} and "
                            f"unzip it; data_folder must hold questions/ and images/ (now {self.root})")
        stat = path.stat()
        key = {"file": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        folder = (Path(os.path.expanduser(self.params.cache_folder)) if self.params.cache_folder
                  else _default_cache_folder(self.root))
        return cached_dataset(folder, f"clevr_questions_{self.split}", key, RECORDS_FORMAT,
                              lambda: parse_questions(path))

    def _check_images(self) -> None:
        """Every question's image is in the split's image folder (one listing of the folder, not 70,000 look-ups)."""
        try:
            present = set(os.listdir(self.image_folder))
        except OSError as exc:
            raise DataError(f"{self.name} {self.split}: cannot list the image folder {self.image_folder} "
                            f"({exc.strerror or exc}); it must hold the PNG files the questions name "
                            f"({self.image_files[0] if self.image_files else '...'}, ...)") from None
        missing = [name for name in self.image_files if name not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(f"{self.name} {self.split}: {len(missing)} image file(s) named by {self.questions_file} "
                            f"are missing from {self.image_folder}: {shown}")
        self._raw_size = self._first_image_size()

    def _first_image_size(self) -> tuple[int, int]:
        """(height, width) of the images as the batches hold them: ``resize``, or the first file's size."""
        if self.params.resize is not None:
            return int(self.params.resize[0]), int(self.params.resize[1])
        if not self.image_files:
            return 320, 480
        from PIL import Image

        path = self.image_folder / self.image_files[0]
        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read the CLEVR image {path}: {exc}") from None
        return height, width

    def features_path(self) -> Path:
        if self.params.features_file:
            return Path(os.path.expanduser(self.params.features_file))
        return self.root / FEATURES_DIR / self.params.feature_extractor / f"{self.split}.npy"

    def _open_features(self) -> None:
        """The split's feature file: its sidecar must describe this split, and hold every question's image."""
        features = read_features(self.features_path())
        meta = features.meta
        if meta["split"] != self.split or meta["dataset"] != self.name:
            raise DataError(f"{self.name} {self.split}: {features.path} holds the features of {meta['dataset']} "
                            f"split {meta['split']}")
        row = {name: i for i, name in enumerate(features.image_filenames)}
        missing = [name for name in self.image_files if name not in row]
        if missing:
            raise DataError(f"{self.name} {self.split}: {features.path} has no features of {len(missing)} image(s) "
                            f"the questions name: {', '.join(missing[:5])}; extract the features of this image "
                            "folder again")
        self.image_rows = torch.tensor([row[name] for name in self.image_files], dtype=torch.int64)[self.image_ids]
        if features.extractor.get("random_weights"):
            logger.warning("%s %s: the features in %s were extracted with RANDOM weights (for tests only): what a "
                           "model learns from them says nothing about CLEVR", self.name, self.split, features.path)
        self.features = features

    # --- assets: the vocabulary, and which extractor made the features --------------------------------------
    def feature_settings(self) -> dict[str, Any] | None:
        """What made this split's features (None for raw images): every split of a run must agree."""
        if self.features is None:
            return None
        extractor = self.features.extractor
        return {"shape": list(self.features.feature_shape),
                **{key: extractor.get(key) for key in ("architecture", "last_layer", "image_size", "weights_sha256",
                                                       "random_weights", "random_seed")}}

    def build_assets(self) -> dict[str, Any]:
        assets = super().build_assets()
        if "image_features" not in assets:
            assets["image_features"] = self.feature_settings()
        return assets

    def use_assets(self, assets: Mapping[str, Any]) -> None:
        trained, mine = assets.get("image_features"), self.feature_settings()
        if trained and mine and trained != mine:
            changed = ", ".join(f"{k}: {mine.get(k)!r} vs {trained.get(k)!r}" for k in sorted(set(trained) | set(mine))
                                if trained.get(k) != mine.get(k))
            raise DataError(f"{self.name} {self.split}: the features in {self.features_path()} were not made like the "
                            f"training split's ({changed}): extract every split with the same extractor")
        super().use_assets(assets)

    # --- images ---------------------------------------------------------------------------------------------
    def image_shape(self) -> tuple[int, int, int]:
        if self.features is not None:
            return self.features.feature_shape
        return (3, *self._raw_size)

    def image_description(self) -> str:
        if self.features is not None:
            extractor = self.features.extractor
            return (f"{extractor.get('architecture', 'image')} {extractor.get('last_layer', '')} features of the "
                    f"{extractor.get('image_size', '?')}-pixel image").replace("  ", " ")
        return "RGB image in [0, 1]"

    def extra_values(self) -> dict[str, Any]:
        return {"feature_size": self.features.feature_shape[0]} if self.features is not None else {}

    def extra_definitions(self) -> dict[str, DataDefinition]:
        return {"image_filenames": DataDefinition((-1,), "list", "the image file of each question")}

    def extra_batch(self, indices: torch.Tensor) -> dict[str, Any]:
        return {"image_filenames": [self.image_files[i] for i in self.image_ids[indices].tolist()]}

    def batch_images(self, indices: torch.Tensor) -> torch.Tensor:
        if self.features is not None:
            rows = self.image_rows[indices].numpy()
            return torch.from_numpy(np.ascontiguousarray(self._feature_array()[rows])).float()
        ids = self.image_ids[indices].tolist()
        distinct = list(dict.fromkeys(ids))  # each image of the batch decoded and resized once
        pixels = [self._pixels(i) for i in distinct]
        if len({tuple(p.shape) for p in pixels}) == 1:
            resized = resize(to_float(torch.stack(pixels)), self._raw_size)
        else:  # images of several sizes: each resized on its own (the same values)
            if self.params.resize is None:
                raise DataError(f"{self.name} {self.split}: the images of a batch differ in size "
                                f"({sorted({tuple(p.shape[1:]) for p in pixels})}): set resize")
            resized = torch.cat([resize(to_float(p.unsqueeze(0)), self._raw_size) for p in pixels])
        position = {image: i for i, image in enumerate(distinct)}
        return resized[torch.tensor([position[i] for i in ids], dtype=torch.int64)]

    def _pixels(self, image_id: int) -> torch.Tensor:
        """The decoded image ``image_id`` (uint8 [3, H, W]), through the small read-through cache."""
        cached = self._image_cache.get(image_id)
        if cached is not None:
            self._image_cache.move_to_end(image_id)
            return cached
        pixels = read_image(self.image_folder / self.image_files[image_id])
        if self.params.image_cache_size:
            self._image_cache[image_id] = pixels
            while len(self._image_cache) > self.params.image_cache_size:
                self._image_cache.popitem(last=False)
        return pixels

    def _feature_array(self) -> np.ndarray:
        assert self.features is not None
        if self.features.array is None:  # dropped when the problem was pickled (a spawned DataLoader worker)
            self.features.array = np.load(self.features.path, mmap_mode="r", allow_pickle=False)
        return self.features.array

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a spawned worker) without the memory map, reopened there, nor the decoded images."""
        state = dict(self.__dict__)
        state["_image_cache"] = OrderedDict()
        if self.features is not None:
            state["features"] = dataclasses.replace(self.features, array=None)
        return state

    def display_image(self, batch: dict[str, Any], index: int) -> torch.Tensor | None:
        """The sample's image in [0, 1]: the batch's pixels, or with features the PNG when the folder holds it."""
        if self.features is None:
            return super().display_image(batch, index)
        path = self.image_folder / batch["image_filenames"][index]
        return to_float(read_image(path)) if path.is_file() else None


@register_problem
class CLEVRCoGenT(CLEVR):
    """CLEVR-CoGenT (compositional generalisation): condition A (trainA, valA, testA) and B (valB, testB), whose
    cube and cylinder colours are swapped; the same files, batches and statistics as CLEVR.

    Train on trainA, test on valA and valB; a fine-tune on valB keeps A's vocabulary with ``vocabulary_from``
    (the training run's folder). testA and testB have no answers and are refused.
    """

    SPLITS = ("trainA", "valA", "valB", "testA", "testB")
    TEST_SPLITS = ("testA", "testB")
    TEST_ADVICE = "use valA and valB as the test sets (and the last 10% of trainA for validation)"
    ARCHIVE = "https://dl.fbaipublicfiles.com/clevr/CLEVR_CoGenT_v1.0.zip (24 GB)"

    @dataclasses.dataclass(kw_only=True)
    class Params(CLEVR.Params):
        """Parameters of the CLEVR-CoGenT problem."""

        data_folder: str = param(doc="folder holding questions/ and images/ of the unzipped "
                                                             "official CoGenT archive (any name)", path=True)
        split: Literal["trainA", "valA", "valB", "testA", "testB"] = param(
            "trainA", "trainA, valA or valB (testA, testB: answers withheld, refused)")


__all__ = ["ANSWERS", "CLEVR", "CLEVRCoGenT", "FAMILY_TYPES", "QUESTION_CATEGORIES", "QUESTION_TYPES",
           "TYPE_FAMILIES", "parse_questions", "read_image", "tokenize"]

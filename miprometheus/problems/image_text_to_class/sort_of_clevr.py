"""Sort-of-CLEVR as MI-Prometheus generates it: 2-6 coloured squares and circles, 7 questions per object.

The MI-Prometheus variant of the Sort-of-CLEVR of Santoro et al. 2017 (supplementary material D). A scene holds
``n`` objects (uniform in ``[min_objects, max_objects]``), each of a distinct colour among 6 and a random
shape (rectangle or circle), in distinct cells of a 4x4 grid with a jitter of ±2 px, drawn with Pillow on
a (180, 180, 150) background. Every object is asked the 7 questions, object by object (``7 n`` questions
per scene): its shape, is it closer to the bottom, to the left (non-relational); the shape and the colour
of the nearest and of the farthest other object (relational; squared distances between centres, stable
sort). The 10 answers are the 6 colours, the 2 shapes, yes and no, in that order.

Jitter ties. Two candidates are often at the same distance in cells (the neighbours at (1, 0) and (0, 1)), and
then the ±2 px jitter alone decides the nearest or farthest: :func:`relational_ties` finds those questions and
the accuracy an oracle that knows the cells but not the jitter could reach (92 % of the relational questions of
the shipped 64 px test split). ``tie_margin`` > 0 leaves out every relational question whose answer does not win
by that many px (another object with another answer within ``tie_margin`` px of the answering object's
distance). The scenes stay; the question mix changes: dense scenes lose more relational questions (a scene of
2 objects loses none: its one candidate has no rival) and colour questions more than shape questions (every
other object is a colour rival, only those of the other shape are shape rivals). At 2 px, on the shipped test
split: 89 % of the relational questions are kept (86 % of the colour, 93 % of the shape ones); their share of
all questions falls from 4/7 = 57.1 % to 54.3 % (53.2 % in 6-object scenes). ``bench/sort_of_clevr_ceiling.py``
measures both.

Departures from the original, on purpose:

* the scenes are drawn from ``dataset_generator(dataset_seed, "sort_of_clevr", split)``, never from the
  global RNG or the run's seed: each split name has its own scenes, the same in every run;
* ``num_scenes`` counts scenes (the original's ``size`` counted questions and cut the last scene short);
* images are standard CHW (the original transposed x and y);
* the cache (:func:`~miprometheus.problems.cache.cached_dataset`) holds each image once per scene, not once
  per question, and its name is the hash of every parameter that defines the content. Questions are derived
  from the stored scenes, so SortOfCLEVR and ShapeColorQuery with the same parameters share one file (the
  original's two problems collided on one HDF5 name with different contents).

Questions are tokens (the one VQA question format of :mod:`.vqa_problem`): ``[colour, type-word]``. The
original float encoding (6 colour + 7 type one-hot bits) is kept as ``questions_encoding`` [B, 13].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from miprometheus.data import DataDefinition
from miprometheus.errors import DataError
from miprometheus.params import MAX_IMAGE_SIDE, param
from miprometheus.problems.cache import cache_path, cached_dataset
from miprometheus.problems.dataset_seeding import dataset_generator
from miprometheus.problems.image_text_to_class.vqa_problem import VQAParams, VQAProblem
from miprometheus.problems.problem import Batch
from miprometheus.registry import register_problem

COLOR_NAMES = ("blue", "green", "red", "yellow", "magenta", "cyan")
COLOR_RGB = ((0, 0, 210), (0, 210, 0), (210, 0, 0), (150, 150, 0), (150, 0, 150), (0, 150, 150))
BACKGROUND_RGB = (180, 180, 150)
SHAPE_NAMES = ("rectangle", "circle")
#: the 7 question types, numbered as the original (0-2 non-relational, 3-6 relational)
QUESTION_TYPE_NAMES = ("shape", "bottom", "left", "nearest_shape", "farthest_shape", "nearest_color",
                       "farthest_color")
QUESTION_GROUPS = {"non_relational": list(QUESTION_TYPE_NAMES[:3]), "relational": list(QUESTION_TYPE_NAMES[3:])}
#: the question of each type in words; ``{object}`` is "red object" (or "red circle" for ShapeColorQuery)
QUESTION_TEMPLATES = {
    "shape": "What is the shape of the {object}?",
    "bottom": "Is the {object} closer to the bottom of the image?",
    "left": "Is the {object} closer to the left side of the image?",
    "nearest_shape": "What is the shape of the object nearest to the {object}?",
    "farthest_shape": "What is the shape of the object farthest from the {object}?",
    "nearest_color": "What is the color of the object nearest to the {object}?",
    "farthest_color": "What is the color of the object farthest from the {object}?",
}
ANSWER_NAMES = (*COLOR_NAMES, *SHAPE_NAMES, "yes", "no")
SHAPE_ANSWER, YES, NO = 6, 8, 9  # answer index of rectangle (circle = 7), yes, no
NUM_TYPES = len(QUESTION_TYPE_NAMES)

GRID = 4  # cells per side
JITTER = 2  # centres move by an integer in [-JITTER, JITTER] along each axis
MAX_OBJECTS = min(6, len(COLOR_NAMES))
SPLITS = ("train", "validation", "test")
CACHE_NAME = "sort_of_clevr"
CACHE_FORMAT_VERSION = 1


def block_size(img_size: int) -> int:
    """The side of a grid cell in pixels: ``int(img_size * 0.9 / 4)`` (28 at 128 px, 7 at 32 px)."""
    return int(img_size * 0.9 / GRID)


def half_size(img_size: int) -> int:
    """Half the side of an object: ``int((img_size * 0.9 / 4) * 0.7 / 2)`` (10 at 128 px: 21 x 21 px objects)."""
    return int((img_size * 0.9 / GRID) * 0.7 / 2)


# --- generation ------------------------------------------------------------------------------------------
def draw_layouts(generator: torch.Generator, num_scenes: int, min_objects: int, max_objects: int,
                 img_size: int) -> dict[str, torch.Tensor]:
    """The objects of ``num_scenes`` scenes: how many, their colours, shapes and centres.

    ``num_objects`` int64 [S]; ``colors``, ``shapes`` int64 [S, max_objects] (-1 after the last object);
    ``centers`` float32 [S, max_objects, 2] as (x, y) in pixels, y downwards (0 after the last object).
    Each scene's colours and cells are random permutations (the argsort of uniform draws), so all scenes
    are drawn at once.
    """
    S, M = num_scenes, max_objects
    num_objects = torch.randint(min_objects, max_objects + 1, (S,), generator=generator)
    colors = torch.rand(S, len(COLOR_NAMES), generator=generator).argsort(dim=1, stable=True)[:, :M]
    cells = torch.rand(S, GRID * GRID, generator=generator).argsort(dim=1, stable=True)[:, :M]
    shapes = torch.randint(0, len(SHAPE_NAMES), (S, M), generator=generator)
    jitter = torch.randint(-JITTER, JITTER + 1, (S, M, 2), generator=generator)

    block = block_size(img_size)
    column = cells % GRID
    row = GRID - 1 - cells // GRID  # cells 0-3 are the bottom row of the image
    centers = (torch.stack([column, row], dim=-1).to(torch.float64) + 0.5) * block + jitter
    present = torch.arange(M).unsqueeze(0) < num_objects.unsqueeze(1)
    return {
        "num_objects": num_objects,
        "colors": torch.where(present, colors, -1),
        "shapes": torch.where(present, shapes, -1),
        "centers": torch.where(present.unsqueeze(-1), centers, 0.0).to(torch.float32),
    }


def render_scenes(layouts: dict[str, torch.Tensor], img_size: int) -> torch.Tensor:
    """The images of the scenes, uint8 [S, H, W, 3] (row = y), drawn with Pillow object by object.

    Each object fills the box ``(cx - s, cy - s, cx + s, cy + s)``, corners included (s = :func:`half_size`):
    a square, or the ellipse inscribed in it.
    """
    s = half_size(img_size)
    counts = layouts["num_objects"].tolist()
    colors, shapes, centers = layouts["colors"].tolist(), layouts["shapes"].tolist(), layouts["centers"].tolist()
    images = np.empty((len(counts), img_size, img_size, 3), dtype=np.uint8)
    for scene, n in enumerate(counts):
        image = Image.new("RGB", (img_size, img_size), BACKGROUND_RGB)
        draw = ImageDraw.Draw(image)
        for i in range(n):
            cx, cy = centers[scene][i]
            box = (cx - s, cy - s, cx + s, cy + s)
            fill = COLOR_RGB[colors[scene][i]]
            if shapes[scene][i] == 0:
                draw.rectangle(box, fill=fill)
            else:
                draw.ellipse(box, fill=fill)
        images[scene] = np.asarray(image)
    return torch.from_numpy(images)


def _object_questions(layouts: dict[str, torch.Tensor], img_size: int) -> dict[str, torch.Tensor]:
    """What asking the questions and measuring their ties share, for every object slot of every scene.

    ``present`` bool [S, M]; ``answers`` int64 [S, M, 7] (meaningless where absent); ``distance`` float64
    [S, M, M] between centres in px; ``others`` bool [S, M, M] (object j is a candidate answer of object i's
    relational questions: both present, j != i); ``candidate_answers`` int64 [S, M, 4] (what each relational
    type would answer if object j were the one ranked first); ``answering`` int64 [S, M, 4] (the index of the
    object that does answer each relational question).
    """
    num_objects, colors, shapes = layouts["num_objects"], layouts["colors"], layouts["shapes"]
    centers = layouts["centers"].to(torch.float64)
    S, M = colors.shape
    present = torch.arange(M).unsqueeze(0) < num_objects.unsqueeze(1)  # [S, M]
    squared = ((centers.unsqueeze(2) - centers.unsqueeze(1)) ** 2).sum(-1)  # [S, M, M]
    ranking = squared.masked_fill(~present.unsqueeze(1), float("inf")).argsort(dim=-1, stable=True)  # absent last
    nearest = ranking[..., 1]  # ranking[..., 0] is the object itself (distance 0)
    farthest = ranking.gather(-1, (num_objects - 1).view(S, 1, 1).expand(S, M, 1)).squeeze(-1)
    answering = torch.stack([nearest, farthest, nearest, farthest], dim=-1)  # types 3-6

    shape_answers = SHAPE_ANSWER + shapes
    candidate_answers = torch.stack([shape_answers, shape_answers, colors, colors], dim=-1)  # [S, M, 4]
    half = int(img_size / 2)
    answers = torch.cat([
        torch.stack([shape_answers, torch.where(centers[..., 1] > half, YES, NO),
                     torch.where(centers[..., 0] < half, YES, NO)], dim=-1),
        candidate_answers.gather(1, answering),  # row i of type t: the answer of object answering[i, t]
    ], dim=-1)  # [S, M, 7]
    others = present.unsqueeze(1) & present.unsqueeze(2) & ~torch.eye(M, dtype=torch.bool)
    return {"present": present, "answers": answers, "distance": squared.sqrt(), "others": others,
            "candidate_answers": candidate_answers, "answering": answering}


NEAREST_FIRST = torch.tensor([True, False, True, False])  # which of the relational types 3-6 rank the nearest first


def _answer_margins(q: dict[str, torch.Tensor]) -> torch.Tensor:
    """By how many px each relational question's answer wins, float64 [S, M, 4]: the distance between the
    answering object and the closest-ranked rival with a different answer (inf when there is none)."""
    distance, answers = q["distance"], q["answers"][..., 3:]
    answer_distance = distance.gather(-1, q["answering"]).unsqueeze(2)  # [S, M, 1, 4]
    to_each = distance.unsqueeze(-1)  # [S, M, M, 1]
    gap = torch.where(NEAREST_FIRST, to_each - answer_distance, answer_distance - to_each)  # >= 0 for candidates
    rival = q["others"].unsqueeze(-1) & (q["candidate_answers"].unsqueeze(1) != answers.unsqueeze(2))
    return gap.masked_fill(~rival, float("inf")).amin(dim=2)


def ask_questions(layouts: dict[str, torch.Tensor], img_size: int, tie_margin: float = 0.0) -> dict[str, torch.Tensor]:
    """The 7 questions of every object of every scene, object by object, and their answers.

    ``scene`` int32, ``object``, ``type`` and ``answer`` uint8, each [N] with N = 7 x the objects of all scenes.
    The other objects are ranked by squared distance with a stable sort (ties: lower index first): the
    nearest is the first after the object itself, the farthest the last (with 2 objects, the same one).
    With ``tie_margin`` > 0, a relational question is left out when another object with a different answer
    lies less than ``tie_margin`` px farther (nearest) or nearer (farthest) than the answering one.
    """
    q = _object_questions(layouts, img_size)
    asked = q["present"].unsqueeze(-1).expand(-1, -1, NUM_TYPES).clone()  # [S, M, 7]
    if tie_margin > 0:
        asked[..., 3:] &= _answer_margins(q) >= tie_margin
    scene, obj, kind = asked.nonzero(as_tuple=True)  # row-major: scene by scene, object by object, type by type
    return {
        "scene": scene.to(torch.int32),
        "object": obj.to(torch.uint8),
        "type": kind.to(torch.uint8),
        "answer": q["answers"][scene, obj, kind].to(torch.uint8),
    }


def relational_ties(layouts: dict[str, torch.Tensor], img_size: int,
                    tie_margin: float = 0.0) -> dict[str, torch.Tensor]:
    """How the jitter decides the relational questions that :func:`ask_questions` asks, question by question.

    An oracle that knows every object's cell but not its ±2 px jitter ranks the candidates by squared cell
    distance and picks uniformly among those at the extreme one (nearest or farthest in cells). Per relational
    question (the order of :func:`ask_questions` with the same ``tie_margin``), each [N]: ``scene``,
    ``object``, ``type`` (3-6), ``answer``; ``margin`` float64, by how many px the answer wins (see
    ``tie_margin``; inf when no other candidate has a different answer); ``tied``, the oracle's choice has
    more than one candidate; ``ambiguous``, their answers differ (colours always do, shapes may agree);
    ``reordered``, the jitter made the answering object beat one that is nearer (farther) in cells, so the
    oracle's choice misses it; ``ceiling`` float64, the oracle's expected accuracy: the share of its
    choice that gives the right answer.
    """
    q = _object_questions(layouts, img_size)
    answers, candidate_answers, others = q["answers"][..., 3:], q["candidate_answers"], q["others"]
    # the cell of a centre: the jitter is under half a cell for img_size >= 23
    cells = torch.div(layouts["centers"].to(torch.float64), block_size(img_size), rounding_mode="floor")
    cell_squared = ((cells.unsqueeze(2) - cells.unsqueeze(1)) ** 2).sum(-1)  # [S, M, M], whole numbers
    nearest = cell_squared.masked_fill(~others, float("inf")).amin(-1, keepdim=True)
    farthest = cell_squared.masked_fill(~others, -1.0).amax(-1, keepdim=True)
    choice = others.unsqueeze(-1) & torch.where(NEAREST_FIRST, (cell_squared == nearest).unsqueeze(-1),
                                                (cell_squared == farthest).unsqueeze(-1))  # [S, M, M, 4]
    chosen = choice.sum(2)  # [S, M, 4]
    right = (choice & (candidate_answers.unsqueeze(1) == answers.unsqueeze(2))).sum(2)
    lowest = candidate_answers.unsqueeze(1).masked_fill(~choice, len(ANSWER_NAMES)).amin(2)
    highest = candidate_answers.unsqueeze(1).masked_fill(~choice, -1).amax(2)
    in_choice = choice.gather(2, q["answering"].unsqueeze(2)).squeeze(2)

    margins = _answer_margins(q)
    asked = q["present"].unsqueeze(-1).expand(-1, -1, 4)
    if tie_margin > 0:
        asked = asked & (margins >= tie_margin)
    scene, obj, kind = asked.nonzero(as_tuple=True)
    return {
        "scene": scene, "object": obj, "type": kind + 3, "answer": answers[scene, obj, kind],
        "margin": margins[scene, obj, kind],
        "tied": chosen[scene, obj, kind] > 1,
        "ambiguous": lowest[scene, obj, kind] != highest[scene, obj, kind],
        "reordered": ~in_choice[scene, obj, kind],
        "ceiling": right[scene, obj, kind].double() / chosen[scene, obj, kind],
    }


#: the margins (px) that :func:`tie_ceiling` counts the questions under
MARGIN_THRESHOLDS = (1, 2, 4)


def tie_ceiling(ties: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """The ceiling that jitter ties put on relational accuracy, from :func:`relational_ties`' questions.

    One row per relational type and one for the group ``relational``: ``questions`` (how many), the shares
    ``tied``, ``ambiguous``, ``reordered``, the oracle's mean accuracy ``ceiling``, and ``margin_below_<k>``,
    the share of questions whose answer wins by less than k px (k in :data:`MARGIN_THRESHOLDS`).
    """
    rows = {name: ties["type"] == t for t, name in enumerate(QUESTION_TYPE_NAMES) if t >= 3}
    rows["relational"] = torch.ones_like(ties["type"], dtype=torch.bool)
    table = {}
    for name, member in rows.items():
        count = int(member.sum())

        def share(flags: torch.Tensor, member: torch.Tensor = member, count: int = count) -> float:
            return float(flags[member].double().sum()) / count if count else float("nan")

        table[name] = {"questions": count, "tied": share(ties["tied"]), "ambiguous": share(ties["ambiguous"]),
                       "reordered": share(ties["reordered"]), "ceiling": share(ties["ceiling"]),
                       **{f"margin_below_{k}": share(ties["margin"] < k) for k in MARGIN_THRESHOLDS}}
    return table


def generate(num_scenes: int, img_size: int, min_objects: int, max_objects: int, dataset_seed: int,
             split: str, tie_margin: float = 0.0) -> dict[str, torch.Tensor]:
    """A whole dataset as the cache holds it: the scenes (layouts, images uint8 [S, H, W, 3]) and the questions.

    ``tie_margin`` leaves relational questions out (:func:`ask_questions`); the scenes do not depend on it.
    """
    generator = dataset_generator(dataset_seed, CACHE_NAME, split)
    layouts = draw_layouts(generator, num_scenes, min_objects, max_objects, img_size)
    questions = ask_questions(layouts, img_size, tie_margin)
    return {
        "images": render_scenes(layouts, img_size),
        "num_objects": layouts["num_objects"].to(torch.uint8),
        "colors": layouts["colors"].to(torch.int8),
        "shapes": layouts["shapes"].to(torch.int8),
        "centers": layouts["centers"],
        **{f"question_{key}": value for key, value in questions.items()},
    }


def describe_scene(colors: Sequence[int], shapes: Sequence[int], centers: Sequence[Sequence[float]]) -> str:
    """The original's scene description: ``| red circle at (42.0, 70.0) | blue rectangle at (14.0, 98.0) | ``."""
    return "| " + "".join(f"{COLOR_NAMES[c]} {SHAPE_NAMES[s]} at ({float(x)!r}, {float(y)!r}) | "
                          for c, s, (x, y) in zip(colors, shapes, centers))


def question_sentence(tokens: Sequence[str]) -> str:
    """A question's tokens in words: ``[colour, type]`` or ``[shape | "object", colour, type]``."""
    *noun, color, type_word = tokens
    return QUESTION_TEMPLATES[type_word].format(object=f"{color} {noun[0] if noun else 'object'}")


# --- the problem -----------------------------------------------------------------------------------------
@register_problem
class SortOfCLEVR(VQAProblem):
    """Sort-of-CLEVR (MI-Prometheus version): 7 questions about each of 2-6 coloured squares and circles.

    Batches follow the VQA contract (``images`` [B, 3, H, W] float32 in [0, 1], ``questions`` [B, 2] int64
    tokens ``[colour, type]``, ``questions_length``, ``answers`` [B] 0..9, ``question_types``, texts), plus
    ``questions_encoding`` [B, 13] float32 (the original's 6 colour + 7 type one-hot bits) and
    ``scene_descriptions``. Statistics: ``acc``, ``acc_<type>`` and ``acc_relational`` /
    ``acc_non_relational``. Scenes are generated once per parameter set and cached in ``data_folder``.
    """

    @dataclasses.dataclass(kw_only=True)
    class Params(VQAParams):
        """Parameters of Sort-of-CLEVR (and ShapeColorQuery)."""

        data_folder: str = param(doc="folder of the generated datasets' cache files (one "
                                                         "file per parameter set, shared by experiments)",
                                 path=True)
        split: Literal["train", "validation", "test"] = param(
            "train", "which scenes: each split name draws its own scenes from dataset_seed")
        num_scenes: int = param(10000, "number of scenes (images); each gives 7 questions per object", min=1)
        img_size: int = param(128, "side of the square images in pixels (from 23: grid cells wider than twice the "
                                   "jitter of the object centres)", min=23, max=MAX_IMAGE_SIDE)
        min_objects: int = param(2, "fewest objects in a scene (at least 2: relational questions need another)")
        max_objects: int = param(6, "most objects in a scene (at most 6, one per colour)")
        dataset_seed: int = param(0, "seed of the scenes (independent of the run's seed)")
        tie_margin: float = param(0.0, "px: leave out the relational questions whose answer does not win by this "
                                       "much (another object with another answer within tie_margin px of the "
                                       "answering object's distance); 0: ask them all", min=0)
        regenerate: bool = param(False, "generate the scenes again even when their cache file exists")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._check_params(params)
        self.answer_names = list(ANSWER_NAMES)
        self.question_type_names = list(QUESTION_TYPE_NAMES)
        self.question_groups = {group: list(types) for group, types in QUESTION_GROUPS.items()}

        content = self.cache_params()
        self.cache_file = cache_path(params.data_folder, CACHE_NAME, content, CACHE_FORMAT_VERSION)
        data = cached_dataset(params.data_folder, CACHE_NAME, content, CACHE_FORMAT_VERSION,
                              lambda: generate(**content), regenerate=params.regenerate)
        self._check_data(data)
        self.scene_images: torch.Tensor = data["images"]  # uint8 [S, H, W, 3], one per scene
        self.scene_objects = data["num_objects"].long()
        self.scene_colors, self.scene_shapes = data["colors"].long(), data["shapes"].long()
        self.scene_centers = data["centers"]
        self.scene_descriptions = [describe_scene(c[:n], s[:n], xy[:n]) for n, c, s, xy in zip(
            self.scene_objects.tolist(), self.scene_colors.tolist(), self.scene_shapes.tolist(),
            self.scene_centers.tolist())]

        self.question_scene = data["question_scene"].long()
        self.question_object = data["question_object"].long()
        types = data["question_type"].long()
        self.question_colors = self.scene_colors[self.question_scene, self.question_object]
        self.question_shapes = self.scene_shapes[self.question_scene, self.question_object]
        answers = [ANSWER_NAMES[a] for a in data["question_answer"].tolist()]
        tokens = self.question_tokens(self.question_colors, self.question_shapes, types)
        self.set_records(tokens, answers, types, source=str(self.cache_file))

    def cache_params(self) -> dict[str, Any]:
        """The parameters that define the scenes: the cache file's key (shared with ShapeColorQuery)."""
        p = self.params
        content = {"num_scenes": p.num_scenes, "img_size": p.img_size, "min_objects": p.min_objects,
                   "max_objects": p.max_objects, "dataset_seed": p.dataset_seed, "split": p.split}
        if p.tie_margin:  # only then: the files made before the option keep their names
            content["tie_margin"] = float(p.tie_margin)
        return content

    def scene_layouts(self) -> dict[str, torch.Tensor]:
        """The stored scenes as :func:`draw_layouts` gives them (for :func:`ask_questions`, :func:`relational_ties`)."""
        return {"num_objects": self.scene_objects, "colors": self.scene_colors, "shapes": self.scene_shapes,
                "centers": self.scene_centers}

    def _check_params(self, p: Params) -> None:
        def integer(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for key in ("batch_size", "num_scenes", "img_size", "min_objects", "max_objects", "dataset_seed"):
            if not integer(getattr(p, key)):
                raise self.config_error(f"{key} must be an integer, got {getattr(p, key)!r}")
        if isinstance(p.tie_margin, bool) or not isinstance(p.tie_margin, (int, float)) or not math.isfinite(
                p.tie_margin):
            raise self.config_error(f"tie_margin must be a finite number of pixels, got {p.tie_margin!r}")
        if p.split not in SPLITS:
            raise self.config_error(f"split must be one of {', '.join(SPLITS)}, got {p.split!r}")
        if not 2 <= p.min_objects <= p.max_objects <= MAX_OBJECTS:
            raise self.config_error(f"need 2 <= min_objects <= max_objects <= {MAX_OBJECTS} (one colour per object),"
                                    f" got min_objects {p.min_objects}, max_objects {p.max_objects}")

    def _check_data(self, data: Any) -> None:
        """The cache file holds what its parameters say (a hand-edited or foreign file is a DataError)."""
        p = self.params
        expected = {"images": (p.num_scenes, p.img_size, p.img_size, 3), "colors": (p.num_scenes, p.max_objects)}
        for key, shape in expected.items():
            value = data.get(key) if isinstance(data, dict) else None
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                raise DataError(f"{self.name}: the cache file {self.cache_file} does not hold {key} of shape "
                                f"{list(shape)}: delete it (or set regenerate: true) to generate it again")

    # --- questions: tokens and the original float encoding (ShapeColorQuery overrides both) -------------------
    def question_tokens(self, colors: torch.Tensor, shapes: torch.Tensor, types: torch.Tensor) -> list[Sequence[str]]:
        """Each question as ``[colour, type-word]``."""
        words = [[(color, word) for word in QUESTION_TYPE_NAMES] for color in COLOR_NAMES]
        return [words[c][t] for c, t in zip(colors.tolist(), types.tolist())]

    def question_encoding(self, colors: torch.Tensor, shapes: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """The original's question vector, float32 [B, 13]: colour one-hot (6) then type one-hot (7)."""
        return torch.cat([F.one_hot(colors, len(COLOR_NAMES)), F.one_hot(types, NUM_TYPES)], dim=1).float()

    def encoding_definition(self) -> DataDefinition:
        return DataDefinition((-1, len(COLOR_NAMES) + NUM_TYPES), "float32",
                              "the original's question: colour one-hot (6) then question-type one-hot (7)")

    # --- the VQA base's hooks ---------------------------------------------------------------------------------
    def image_shape(self) -> tuple[int, int, int]:
        return 3, self.params.img_size, self.params.img_size

    def image_description(self) -> str:
        return "RGB scene in [0, 1], standard CHW (row = y)"

    def batch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """The scene image of each question, float32 [B, 3, H, W] in [0, 1] (one gather from the uint8 store)."""
        images = self.scene_images[self.question_scene[indices]].permute(0, 3, 1, 2)
        return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)

    def extra_definitions(self) -> dict[str, DataDefinition]:
        return {"questions_encoding": self.encoding_definition(),
                "scene_descriptions": DataDefinition((-1,), "list", "the objects of the scene: '| <colour> <shape> "
                                                                    "at (<x>, <y>) | ...'")}

    def extra_batch(self, indices: torch.Tensor) -> dict[str, Any]:
        return {"questions_encoding": self.question_encoding(self.question_colors[indices],
                                                             self.question_shapes[indices],
                                                             self.question_types_tensor[indices]),
                "scene_descriptions": [self.scene_descriptions[s] for s in self.question_scene[indices].tolist()]}

    def extra_values(self) -> dict[str, Any]:
        return {"num_objects": self.params.max_objects}

    def plot(self, batch: Batch, index: int, predictions: torch.Tensor | None = None) -> Any:
        """Sample ``index``: the scene, the question in words, the answer and the top-3 predicted answers."""
        from miprometheus.plotting import vqa_figure

        probabilities = None if predictions is None else torch.softmax(predictions[index].detach().float(), dim=0)
        return vqa_figure(self.display_image(batch, index), question_sentence(batch["questions_text"][index].split()),
                          batch["answers_text"][index], probabilities, self.answer_names,
                          f"{self.name}, sample {index}")


__all__ = ["ANSWER_NAMES", "COLOR_NAMES", "QUESTION_TYPE_NAMES", "SHAPE_NAMES", "SortOfCLEVR", "ask_questions",
           "block_size", "describe_scene", "draw_layouts", "generate", "half_size", "question_sentence",
           "relational_ties", "render_scenes", "tie_ceiling"]

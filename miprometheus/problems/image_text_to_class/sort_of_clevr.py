"""Sort-of-CLEVR as MI-Prometheus generates it: 2-6 coloured squares and circles, 7 questions per object.

The MI-Prometheus variant of the Sort-of-CLEVR of Santoro et al. 2017 (supplementary material D). A scene holds
``n`` objects (uniform in ``[min_objects, max_objects]``), each of a distinct colour among 6 and a random
shape (rectangle or circle), in distinct cells of a 4x4 grid with a jitter of ±2 px, drawn with Pillow on
a (180, 180, 150) background. Every object is asked the 7 questions, object by object (``7 n`` questions
per scene): its shape, is it closer to the bottom, to the left (non-relational); the shape and the colour
of the nearest and of the farthest other object (relational; squared distances between centres, stable
sort). The 10 answers are the 6 colours, the 2 shapes, yes and no, in that order.

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
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from miprometheus.data import DataDefinition
from miprometheus.errors import DataError
from miprometheus.params import param
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


def ask_questions(layouts: dict[str, torch.Tensor], img_size: int) -> dict[str, torch.Tensor]:
    """The 7 questions of every object of every scene, object by object, and their answers.

    ``scene`` int32, ``object``, ``type`` and ``answer`` uint8, each [N] with N = 7 x the objects of all scenes.
    The other objects are ranked by squared distance with a stable sort (ties: lower index first): the
    nearest is the first after the object itself, the farthest the last (with 2 objects, the same one).
    """
    num_objects, colors, shapes = layouts["num_objects"], layouts["colors"], layouts["shapes"]
    centers = layouts["centers"].to(torch.float64)
    S, M = colors.shape
    present = torch.arange(M).unsqueeze(0) < num_objects.unsqueeze(1)  # [S, M]
    distances = ((centers.unsqueeze(2) - centers.unsqueeze(1)) ** 2).sum(-1)  # [S, M, M]
    distances = distances.masked_fill(~present.unsqueeze(1), float("inf"))  # absent objects rank last
    ranking = distances.argsort(dim=-1, stable=True)  # [S, M, M]; the object itself first (distance 0)
    nearest = ranking[..., 1]
    farthest = ranking.gather(-1, (num_objects - 1).view(S, 1, 1).expand(S, M, 1)).squeeze(-1)

    def color_of(index: torch.Tensor) -> torch.Tensor:
        return colors.gather(1, index)

    def shape_answer(index: torch.Tensor) -> torch.Tensor:
        return SHAPE_ANSWER + shapes.gather(1, index)

    half = int(img_size / 2)
    answers = torch.stack([
        SHAPE_ANSWER + shapes,
        torch.where(centers[..., 1] > half, YES, NO),
        torch.where(centers[..., 0] < half, YES, NO),
        shape_answer(nearest),
        shape_answer(farthest),
        color_of(nearest),
        color_of(farthest),
    ], dim=-1)  # [S, M, 7]
    scene, obj = present.nonzero(as_tuple=True)  # row-major: scene by scene, object by object
    return {
        "scene": scene.repeat_interleave(NUM_TYPES).to(torch.int32),
        "object": obj.repeat_interleave(NUM_TYPES).to(torch.uint8),
        "type": torch.arange(NUM_TYPES).repeat(scene.numel()).to(torch.uint8),
        "answer": answers[scene, obj].reshape(-1).to(torch.uint8),
    }


def generate(num_scenes: int, img_size: int, min_objects: int, max_objects: int, dataset_seed: int,
             split: str) -> dict[str, torch.Tensor]:
    """A whole dataset as the cache holds it: the scenes (layouts, images uint8 [S, H, W, 3]) and the questions."""
    generator = dataset_generator(dataset_seed, CACHE_NAME, split)
    layouts = draw_layouts(generator, num_scenes, min_objects, max_objects, img_size)
    questions = ask_questions(layouts, img_size)
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
                                   "jitter of the object centres)", min=23)
        min_objects: int = param(2, "fewest objects in a scene (at least 2: relational questions need another)")
        max_objects: int = param(6, "most objects in a scene (at most 6, one per colour)")
        dataset_seed: int = param(0, "seed of the scenes (independent of the run's seed)")
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
        return {"num_scenes": p.num_scenes, "img_size": p.img_size, "min_objects": p.min_objects,
                "max_objects": p.max_objects, "dataset_seed": p.dataset_seed, "split": p.split}

    def _check_params(self, p: Params) -> None:
        def integer(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for key in ("batch_size", "num_scenes", "img_size", "min_objects", "max_objects", "dataset_seed"):
            if not integer(getattr(p, key)):
                raise self.config_error(f"{key} must be an integer, got {getattr(p, key)!r}")
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
           "render_scenes"]

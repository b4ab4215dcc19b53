"""Tiny CLEVR v1.0 and CLEVR-CoGenT folders in the official layout (Johnson et al. 2017).

``questions/CLEVR_<split>_questions.json`` ({"info", "questions"} with programs), ``images/<split>/CLEVR_<split>_
NNNNNN.png`` (RGBA, 480 x 320 unless smaller is asked for) and ``scenes/CLEVR_train_scenes.json``. The questions
cover several types: a count and a yes/no answer, and in validation words the training split does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FULL_SIZE = (480, 320)  # width, height of the official images


def program(*nodes: tuple[str, list[int], list[str]]) -> list[dict[str, Any]]:
    """A functional program as the official files write it: nodes {function, inputs, value_inputs}."""
    return [{"function": f, "inputs": inputs, "value_inputs": values} for f, inputs, values in nodes]


def _filter(function: str, value: str, source: int) -> tuple[str, list[int], list[str]]:
    return (f"filter_{function}", [source], [value])


SCENE = ("scene", [], [])
#: (image index, question, answer, question_family_index, program) of each training question
TRAIN = [
    (0, "Are there any blue cubes?", "yes", 36,
     program(SCENE, _filter("color", "blue", 0), _filter("shape", "cube", 1), ("exist", [2], []))),
    (0, "How many red spheres are there?", "2", 25,
     program(SCENE, _filter("color", "red", 0), _filter("shape", "sphere", 1), ("count", [2], []))),
    (1, "What color is the large metal cylinder?", "red", 29,
     program(SCENE, _filter("size", "large", 0), _filter("material", "metal", 1), _filter("shape", "cylinder", 2),
             ("unique", [3], []), ("query_color", [4], []))),
    (1, "Is the number of cubes less than the number of spheres?", "no", 1,
     program(SCENE, _filter("shape", "cube", 0), ("count", [1], []), SCENE, _filter("shape", "sphere", 3),
             ("count", [4], []), ("less_than", [2, 5], []))),
    (1, "Is there a small rubber cube?", "no", 38,
     program(SCENE, _filter("size", "small", 0), _filter("material", "rubber", 1), _filter("shape", "cube", 2),
             ("exist", [3], []))),
]
#: validation: "shiny" and "material" are not in the training questions
VAL = [
    (0, "How many shiny spheres are there?", "1", 25,
     program(SCENE, _filter("material", "metal", 0), _filter("shape", "sphere", 1), ("count", [2], []))),
    (0, "What material is the cube?", "metal", 30,
     program(SCENE, _filter("shape", "cube", 0), ("unique", [1], []), ("query_material", [2], []))),
]
#: test questions come without answer and program, as in the official test file
TEST = [(0, "Are there any cylinders?", None, 36, None)]

#: CoGenT: condition A for training; in valB "gray" and "cylinders" are new words
TRAIN_A = TRAIN[:4]
VAL_A = VAL[:1]
VAL_B = [
    (0, "Are there any gray cylinders?", "yes", 36,
     program(SCENE, _filter("color", "gray", 0), _filter("shape", "cylinder", 1), ("exist", [2], []))),
    (0, "How many red spheres are there?", "1", 25,
     program(SCENE, _filter("color", "red", 0), _filter("shape", "sphere", 1), ("count", [2], []))),
]


def image_name(split: str, index: int) -> str:
    return f"CLEVR_{split}_{index:06d}.png"


def write_image(path: Path, index: int, size: tuple[int, int] = FULL_SIZE) -> None:
    """An RGBA PNG of ``size`` (width, height): a grey floor with a few coloured shapes (different per index)."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGBA", size, (128, 128, 128, 255))
    draw = ImageDraw.Draw(image)
    colours = [(42, 75, 215, 255), (173, 35, 35, 255), (29, 105, 20, 230), (255, 238, 51, 255)]
    for k in range(3):
        colour = colours[(index + k) % len(colours)]
        left, top = (width * (1 + 3 * k)) // 10, (height * (2 + index % 3)) // 8
        box = [left, top, left + width // 6, top + height // 5]
        (draw.ellipse if (index + k) % 2 else draw.rectangle)(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_questions(root: Path, split: str, questions: list[tuple], dataset: str = "CLEVR") -> Path:
    """``questions/CLEVR_<split>_questions.json`` with the official keys (answer and program only where given)."""
    records = []
    for position, (image, text, answer, family, prog) in enumerate(questions):
        record: dict[str, Any] = {"image_index": image, "program": prog, "question_index": position,
                                  "image_filename": image_name(split, image), "question_family_index": family,
                                  "split": split, "answer": answer, "question": text}
        records.append({k: v for k, v in record.items() if v is not None})
    path = root / "questions" / f"CLEVR_{split}_questions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"split": split, "license": "Creative Commons Attribution (CC BY 4.0)", "version": "1.0",
            "date": "2/14/2017"}
    path.write_text(json.dumps({"info": info, "questions": records}), encoding="utf-8")
    return path


def write_split(root: Path, split: str, questions: list[tuple], size: tuple[int, int] = FULL_SIZE) -> None:
    """A split's questions and the images they name."""
    write_questions(root, split, questions)
    for image in sorted({q[0] for q in questions}):
        write_image(root / "images" / split / image_name(split, image), image, size)


def write_scenes(root: Path, split: str, images: int) -> None:
    """``scenes/CLEVR_<split>_scenes.json`` (optional in the fixture recipe; no problem reads it)."""
    scenes = []
    for index in range(images):
        objects = [{"color": "blue", "size": "large", "shape": "cube", "material": "metal", "rotation": 30.0,
                    "3d_coords": [1.0, -2.0, 0.7], "pixel_coords": [200, 150, 11.0]},
                   {"color": "red", "size": "small", "shape": "sphere", "material": "rubber", "rotation": 0.0,
                    "3d_coords": [-1.5, 1.0, 0.35], "pixel_coords": [300, 180, 10.0]}]
        scenes.append({"split": split, "image_index": index, "image_filename": image_name(split, index),
                       "directions": {"left": [-0.65, 0.76, 0.0], "right": [0.65, -0.76, 0.0],
                                      "front": [0.75, 0.65, 0.0], "behind": [-0.75, -0.65, 0.0],
                                      "below": [0.0, 0.0, -1.0], "above": [0.0, 0.0, 1.0]},
                       "objects": objects,
                       "relations": {"left": [[], [0]], "right": [[1], []], "front": [[1], []], "behind": [[], [0]]}})
    path = root / "scenes" / f"CLEVR_{split}_scenes.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {"split": split, "version": "1.0"}, "scenes": scenes}), encoding="utf-8")


def write_clevr(root: Path, size: tuple[int, int] = FULL_SIZE) -> Path:
    """A tiny ``CLEVR_v1.0``-like folder (``root`` itself): train (2 images, 5 questions), val (1, 2), test (1, 1)."""
    write_split(root, "train", TRAIN, size)
    write_split(root, "val", VAL, size)
    write_split(root, "test", TEST, size)
    write_scenes(root, "train", 2)
    return root


def write_cogent(root: Path, size: tuple[int, int] = FULL_SIZE) -> Path:
    """A tiny ``CLEVR_CoGenT_v1.0``-like folder: trainA (2 images, 4 questions), valA and valB (1 image each)."""
    write_split(root, "trainA", TRAIN_A, size)
    write_split(root, "valA", VAL_A, size)
    write_split(root, "valB", VAL_B, size)
    return root


#: the name of the features :func:`write_clevr_with_features` extracts (random weights, 32 px: 1024 x 2 x 2)
TINY_FEATURES = "resnet101_layer3_32px"


def write_clevr_with_features(root: Path, size: tuple[int, int] = (96, 64),
                              cogent: bool = False) -> tuple[Path, list[str]]:
    """A tiny CLEVR (or CoGenT) folder with the random-weight ResNet-101 layer3 features of its splits at 32 px,
    and the overrides that make ``configs/vqa/default_clevr.yaml`` (``default_cogent.yaml``) and the model configs
    built on it read it (``mip check``): data folder, feature name, sampler indices that fit, no loader workers."""
    from miprometheus.workers.feature_extraction import extract_features

    folder = (write_cogent if cogent else write_clevr)(root, size)
    splits = "[trainA, valA, valB]" if cogent else "[train, val]"
    config = root / "extract_features.yaml"
    config.write_text(f"dataset: {{problem: {'CLEVRCoGenT' if cogent else 'CLEVR'}, data_folder: {folder}, "
                      f"splits: {splits}}}\nextractor: {{random_weights: true, image_size: 32}}\nnum_workers: 0\n")
    extract_features([str(config)], [], report=lambda line: None)
    train = len(TRAIN_A if cogent else TRAIN)
    overrides = [f"training.problem.data_folder={folder}", f"training.problem.feature_extractor={TINY_FEATURES}",
                 f"training.sampler.indices=[0, {train - 1}]", f"validation.sampler.indices=[{train - 1}, {train}]",
                 *(f"{section}.dataloader.num_workers=0" for section in ("training", "validation", "testing"))]
    return folder, overrides


# --- a tiny VQA model for the tests of the problems (registered only while a test uses it) --------------------
def tiny_vqa_model() -> type:
    """``TinyVQA``: mean word embedding of the question + mean of each image channel -> answer logits."""
    from dataclasses import dataclass

    import torch

    from miprometheus.data import DataDefinition
    from miprometheus.models.model import Model
    from miprometheus.params import param

    class TinyVQA(Model):
        """Bag of question words and mean image channels, one linear layer: small enough to overfit in seconds."""

        @dataclass
        class Params:
            question_vocabulary_size: int = param(2, "question tokens", from_problem=True)
            answer_vocabulary_size: int = param(2, "answers", from_problem=True)
            num_channels: int = param(3, "image channels", from_problem=True)
            embedding_size: int = param(16, "word embedding size")

        def __init__(self, params: Any) -> None:
            super().__init__(params)
            self.embedding = torch.nn.Embedding(params.question_vocabulary_size, params.embedding_size, padding_idx=0)
            self.output = torch.nn.Linear(params.embedding_size + params.num_channels, params.answer_vocabulary_size)
            self.input_definitions = {
                "images": DataDefinition((-1, params.num_channels, -1, -1), "float32", "images or feature maps"),
                "questions": DataDefinition((-1, -1), "int64", "question tokens"),
                "questions_length": DataDefinition((-1,), "int64", "question lengths"),
            }
            self.output_definitions = {"predictions": DataDefinition((-1, params.answer_vocabulary_size), "float32",
                                                                     "answer logits")}

        def forward(self, batch: dict[str, Any]) -> torch.Tensor:
            words = self.embedding(batch["questions"]).sum(1) / batch["questions_length"].unsqueeze(1).float()
            return self.output(torch.cat([words, batch["images"].mean(dim=(2, 3))], dim=1))

    return TinyVQA

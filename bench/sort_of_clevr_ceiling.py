"""What Sort-of-CLEVR's data allows: the ceiling that jitter ties put on relational accuracy, and the question priors.

Both on the validation and test splits of the shipped scene parameters (configs/vqa/default_sort_of_clevr.yaml:
64 px, 2-6 objects, dataset_seed 0; 200 and 500 scenes).

* Ceiling (``relational_ties`` / ``tie_ceiling`` of the problem's module), for each ``tie_margin`` in
  ``--margins``: the relational questions the split would ask with that margin, the shares that are tied in
  cells, ambiguous (the tied candidates' answers differ), reordered by the jitter, the expected accuracy of an
  oracle that knows the cells but not the jitter, and the shares whose answer wins by under 1, 2 and 4 px;
  ``kept`` is the share of the margin-0 questions still asked.
* Priors: the best answer from the question alone. For each (question colour, question type), the most
  frequent answer of a training split (ties: the lower answer index) answers every such question of the
  evaluation split; the accuracy per type, per group and overall, for the shipped 2,000 training scenes and
  for 10,000 (the long RelationalNetwork run's).
* The question mix: the share of relational questions by number of objects in the scene, per margin (printed).

    python bench/sort_of_clevr_ceiling.py [--out DIR] [--data-folder DIR] [--margins 0 2 4 8]
                                          [--train-scenes 2000 10000] [--set KEY=VALUE ...]

``--set`` overrides a key of the shipped config (``validation.problem.num_scenes=20``). The scenes come from
the problems' cache files in the config's data folder (``~/data/sort-of-clevr``), generated when missing.
``--out`` writes ``tie_ceiling.csv`` and ``priors.csv``: one row per (split, margin or training size, group
or type), numbers rounded to 4 decimals, the same for the same scenes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import torch

from miprometheus.config.loader import load_config
from miprometheus.problems.image_text_to_class.sort_of_clevr import (
    ANSWER_NAMES,
    COLOR_NAMES,
    MARGIN_THRESHOLDS,
    QUESTION_GROUPS,
    QUESTION_TYPE_NAMES,
    SortOfCLEVR,
    ask_questions,
    relational_ties,
    tie_ceiling,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vqa" / "default_sort_of_clevr.yaml"
SPLITS = {"validation": "validation", "test": "testing"}  # split name: its section in the config
DIGITS = 4


def load_problem(config: Any, section: str, data_folder: str | None, num_scenes: int | None = None) -> SortOfCLEVR:
    """The SortOfCLEVR split of a config section (its cache file read, or generated when missing)."""
    values = {key: value for key, value in config.get(f"{section}.problem").items() if key != "name"}
    if data_folder is not None:
        values["data_folder"] = data_folder
    if num_scenes is not None:
        values["num_scenes"] = num_scenes
    return SortOfCLEVR(SortOfCLEVR.Params(**values))


def ceiling_rows(problem: SortOfCLEVR, margins: list[float]) -> list[dict[str, Any]]:
    """The tie ceiling of a split's relational questions, for each margin (rows of tie_ceiling.csv)."""
    layouts, img_size = problem.scene_layouts(), problem.params.img_size
    rows, asked = [], {}
    for margin in margins:
        for name, row in tie_ceiling(relational_ties(layouts, img_size, margin)).items():
            asked.setdefault(name, row["questions"])
            rows.append({"split": problem.params.split, "tie_margin": margin, "group": name,
                         "questions": row["questions"], "kept": row["questions"] / asked[name],
                         **{key: value for key, value in row.items() if key != "questions"}})
    return rows


def question_only_accuracy(train: SortOfCLEVR, evaluation: SortOfCLEVR) -> dict[str, float]:
    """The accuracy on ``evaluation`` of the most frequent training answer of each (question colour, type):
    per type, per question group and overall."""
    answers, types = len(ANSWER_NAMES), len(QUESTION_TYPE_NAMES)

    def keys(problem: SortOfCLEVR) -> torch.Tensor:
        return problem.question_colors * types + problem.question_types_tensor

    def answer_indices(problem: SortOfCLEVR) -> torch.Tensor:  # (problem.answers exists once assets are used)
        return torch.tensor([ANSWER_NAMES.index(a) for a in problem.answer_words])

    counts = torch.bincount(keys(train) * answers + answer_indices(train),
                            minlength=len(COLOR_NAMES) * types * answers)
    counts = counts.view(-1, types, answers)  # [colour, type, answer]
    fallback = counts.sum(0, keepdim=True).expand_as(counts)  # a (colour, type) never seen: the type's answer
    counts = torch.where(counts.sum(-1, keepdim=True) > 0, counts, fallback)
    prior = counts.view(-1, answers).argmax(-1)  # the first of equal counts: the lower answer index
    correct = (prior[keys(evaluation)] == answer_indices(evaluation)).double()
    kind = evaluation.question_types_tensor
    result = {"overall": float(correct.mean())}
    for group, members in QUESTION_GROUPS.items():
        chosen = torch.isin(kind, torch.tensor([QUESTION_TYPE_NAMES.index(t) for t in members]))
        result[group] = float(correct[chosen].mean())
    for t, name in enumerate(QUESTION_TYPE_NAMES):
        result[name] = float(correct[kind == t].mean())
    return result


def rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, DIGITS) if isinstance(value, float) else value for key, value in row.items()}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Rows as aligned columns (measured floats with 4 decimals, the tie_margin as given)."""
    columns = list(rows[0])

    def cell(column: str, value: Any) -> str:
        if column == "tie_margin":
            return f"{value:g}"
        return f"{value:.{DIGITS}f}" if isinstance(value, float) else str(value)

    cells = [[cell(c, row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for line in cells:
        print("  ".join(value.rjust(w) for value, w in zip(line, widths)))


def question_mix(problem: SortOfCLEVR, margins: list[float]) -> list[dict[str, Any]]:
    """The share of relational questions by scene size, for each margin (the questions the split would ask)."""
    layouts, rows = problem.scene_layouts(), []
    for margin in margins:
        questions = ask_questions(layouts, problem.params.img_size, margin)
        objects = layouts["num_objects"][questions["scene"].long()]
        relational = questions["type"] >= len(QUESTION_GROUPS["non_relational"])
        row: dict[str, Any] = {"split": problem.params.split, "tie_margin": margin}
        for n in range(int(objects.min()), int(objects.max()) + 1):
            row[f"{n}_objects"] = float(relational[objects == n].double().mean())
        rows.append(row | {"all": float(relational.double().mean()), "questions": len(relational)})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rounded(row) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for tie_ceiling.csv and priors.csv (not written without)")
    parser.add_argument("--data-folder", help="cache folder of the scenes (default: the config's)")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 2.0, 4.0, 8.0],
                        help="tie_margin values in px (default 0 2 4 8; the first is the reference of 'kept')")
    parser.add_argument("--train-scenes", type=int, nargs="+",
                        help="training split sizes for the priors (default: the config's and 10000)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    config = load_config([CONFIG], args.set)
    shipped = config.get("training.problem.num_scenes")
    train_sizes = args.train_scenes or sorted({shipped, 10000})
    evaluation = {split: load_problem(config, section, args.data_folder) for split, section in SPLITS.items()}
    p = evaluation["test"].params
    print(f"Sort-of-CLEVR, {p.img_size} px, {p.min_objects}-{p.max_objects} objects, dataset_seed {p.dataset_seed}: "
          + ", ".join(f"{split} {problem.params.num_scenes} scenes" for split, problem in evaluation.items()))

    ceiling = [row for problem in evaluation.values() for row in ceiling_rows(problem, args.margins)]
    print_table("Relational questions: jitter ties and the ceiling of an oracle that knows the cells (tied: its "
                "choice holds several candidates; ambiguous: their answers differ; reordered: the jitter beat a "
                "nearer/farther cell; kept: of the first margin's questions; margin_below_k: the answer wins by "
                f"< k px, k in {', '.join(map(str, MARGIN_THRESHOLDS))})", ceiling)

    print_table("The question mix: share of relational questions by number of objects in the scene",
                [row for problem in evaluation.values() for row in question_mix(problem, args.margins)])

    priors = []
    for size in train_sizes:
        train = load_problem(config, "training", args.data_folder, size)
        for split, problem in evaluation.items():
            for group, accuracy in question_only_accuracy(train, problem).items():
                priors.append({"train_scenes": size, "split": split, "group": group, "accuracy": accuracy})
    print_table("Answer priors: accuracy of the most frequent training answer of each (question colour, type)",
                priors)

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / "tie_ceiling.csv", ceiling)
        write_csv(args.out / "priors.csv", priors)
        print(f"\nwrote {args.out / 'tie_ceiling.csv'} and {args.out / 'priors.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

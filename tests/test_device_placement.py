"""Device placement: every model, and every problem's collate function, loss and statistics, work where their data is.

On a GPU the commonest failure is a tensor made on the default device (the CPU) inside a ``forward``, a loss,
statistics or a collate function: ``torch.zeros(n)`` without ``device=``. On a machine without a GPU it never
fails. Two checks find it here, on a real batch of 2 from a shipped config made tiny by overrides (every
registered model with a problem it fits, then every registered problem not met that way, with a small model):

* **guard**: everything runs on the CPU inside ``with torch.device("meta")``, which makes meta the default device:
  a factory call without ``device=`` gives a meta tensor, which fails to mix with the CPU inputs (on a GPU it
  would be a CPU tensor meeting CUDA ones). Host reads work as usual, so the guard covers every model and
  problem: the collate function of a dataset, the forward (training and evaluation mode, recording what
  ``--visualize`` draws), the loss, its count, the statistics and the backward pass.
* **meta**: the model and the batch move to PyTorch's ``meta`` device (shapes and dtypes, no data), and the
  forward and the loss run there. A tensor made on the CPU by hand (``device="cpu"``, ``torch.from_numpy``),
  which the guard cannot see, meets a meta tensor and the operation fails. What reads values on the host cannot
  run there (``.item()``, ``.tolist()``, ``bool(tensor)``, a shape that depends on the data such as ``x[mask]``),
  so a model whose forward needs such a read is checked by the guard alone, and statistics always are (they read
  their figures on the host: which question types a batch holds, a sequence length, BLEU's words).

Every model runs under the guard; those in :data:`RUNS_ON_META` also run on meta, those in :data:`GUARD_ONLY`
cannot (the reason beside each; a test keeps both lists true). A toy model that makes ``torch.zeros(n)`` in its
forward shows both checks failing (``test_the_checks_catch_a_tensor_made_on_the_default_device``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import torch

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import validate
from miprometheus.data import ANY, DataDefinition
from miprometheus.discovery import builtin_index
from miprometheus.models.model import Model
from miprometheus.problems.assets import apply_assets, build_training_assets
from miprometheus.workers.components import build_model, build_problem, to_device
from miprometheus.workers.step import device_row, run_step
from tests.conftest import CONFIGS

BATCH = 2

#: The models whose forward (training and evaluation) and loss run on the meta device.
RUNS_ON_META = {
    "AlexNet", "DNC", "DWM", "GRU", "LSTM", "LeNet5", "NTM", "ResNet20", "SimpleConvNet", "ThalNet",
}

#: The models checked by the guard alone: the host read in their forward that meta cannot run, and why it stays.
GUARD_ONLY = {
    "MAES": "which samples encode and which solve is read once per forward (.tolist()), to run only the cell some "
            "sample needs at each step; an item with both phase bits is a DataError (read in the same copy)",
    "EncoderSolverLSTM": "as MAES: the phase of every step is read once per forward (.tolist())",
    "EncoderSolverNTM": "as MAES: the phase of every step is read once per forward (.tolist())",
    **dict.fromkeys(("CNN_LSTM", "MAC", "RelationalNetwork", "SAN", "SMAC"),
                    "the question encoder packs the questions (pack_padded_sequence), which takes their lengths on "
                    "the CPU: one copy per forward"),
    "AttentionEncoderDecoder": "the encoder packs the sources (lengths on the CPU); decoding (evaluation) stops "
                               "when every output has ended: one read per decoded token",
    "TransformerEncoderDecoder": "decoding (evaluation) stops when every output has ended: one read per decoded "
                                 "token (training runs on meta)",
}

#: Per model: a shipped config and the overrides that make it tiny (data in tmp folders: ``{mnist}`` ...).
CASES: dict[str, tuple[str, list[str]]] = {
    "LSTM": ("vision/lstm_sequential_row_mnist.yaml", ["training.problem.data_folder={mnist}",
                                                       "model.hidden_size=8"]),
    "GRU": ("algorithmic/gru_serial_recall.yaml", ["model.hidden_size=8"]),
    "ThalNet": ("vision/thalnet_permuted_row_mnist.yaml", ["training.problem.data_folder={mnist}",
                                                           "model.center_size_per_module=4", "model.context_size=4"]),
    "NTM": ("memory/ntm_serial_recall.yaml", ["model.hidden_size=8"]),
    "DNC": ("memory/dnc_reverse_recall.yaml", ["model.hidden_size=8"]),
    "DWM": ("memory/dwm_serial_recall.yaml", ["model.hidden_size=8"]),
    "MAES": ("memory/maes_serial_recall.yaml", ["model.hidden_size=8"]),
    "EncoderSolverLSTM": ("memory/default_serial_recall.yaml", ["model.name=EncoderSolverLSTM", "model.hidden_size=8"]),
    "EncoderSolverNTM": ("memory/default_serial_recall.yaml", ["model.name=EncoderSolverNTM", "model.hidden_size=8"]),
    "LeNet5": ("vision/lenet5_mnist.yaml", ["training.problem.data_folder={mnist}"]),
    "ResNet20": ("vision/resnet20_mnist.yaml", ["training.problem.data_folder={mnist}"]),
    "SimpleConvNet": ("vision/simple_conv_net_cifar10.yaml", ["training.problem.data_folder={cifar}"]),
    "AlexNet": ("vision/alexnet_cifar10.yaml", ["training.problem.data_folder={cifar}"]),
    "CNN_LSTM": ("vqa/cnn_lstm_sort_of_clevr.yaml", ["{sort_of_clevr}"]),
    "RelationalNetwork": ("vqa/relational_network_sort_of_clevr.yaml", ["{sort_of_clevr}"]),
    "SAN": ("vqa/san_shape_color_query.yaml", ["{sort_of_clevr}"]),
    "SMAC": ("vqa/s_mac_shape_color_query.yaml", ["{sort_of_clevr}", "model.dim=16"]),
    "MAC": ("vqa/mac_clevr.yaml", ["{clevr}", "model.dim=16", "model.max_step=2", "model.embedding_size=8"]),
    "AttentionEncoderDecoder": ("translation/attention_encoder_decoder_anki.yaml",
                                ["{anki}", "model.embedding_size=8", "model.hidden_size=8"]),
    "TransformerEncoderDecoder": ("translation/transformer_encoder_decoder_anki.yaml",
                                  ["{anki}", "model.d_model=8", "model.nhead=2", "model.dim_feedforward=16"]),
}

#: Per problem not among the models' cases: a shipped config and its overrides (the tasks' own LSTM configs).
ALGORITHMIC = ["DistractionCarry", "DistractionForget", "DistractionIgnore", "InterruptionNot",
               "InterruptionReverseRecall", "InterruptionSwapRecall", "ManipulationSpatialNot",
               "ManipulationSpatialRotation", "ManipulationTemporalRotation", "OperationSpan", "ReadingSpan",
               "RepeatReverseRecall", "RepeatSerialRecall", "ScratchPad", "SequenceComparison", "SequenceEquality",
               "SequenceSymmetry", "SkipRecall"]
PROBLEM_CASES: dict[str, tuple[str, list[str]]] = {
    **{name: (f"algorithmic/lstm_{re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()}.yaml", ["model.hidden_size=8"])
       for name in ALGORITHMIC},
    "CIFAR100": ("vision/simple_conv_net_cifar10.yaml", ["training.problem.name=CIFAR100",
                                                         "training.problem.data_folder={cifar100}"]),
    "SequentialPixelMNIST": ("vision/lstm_sequential_pixel_mnist.yaml", ["training.problem.data_folder={mnist}",
                                                                         "model.hidden_size=8"]),
    "CLEVRCoGenT": ("vqa/s_mac_cogent.yaml", ["{cogent}", "model.dim=16", "model.max_step=2",
                                              "model.embedding_size=8"]),
}

#: Further model settings that take another path in evaluation mode (beam search decodes otherwise than greedy).
EVALUATION_VARIANTS = {
    "AttentionEncoderDecoder": [{"decoding": "beam", "beam_width": 2}],
    "TransformerEncoderDecoder": [{"decoding": "beam", "beam_width": 2}],
}


# --- tiny data -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """The overrides that point the configs at tiny data sets, made once per module."""
    import numpy as np

    from miprometheus.problems.image_to_class.cifar_format import write_cifar10, write_cifar100
    from tests.clevr_fixtures import write_clevr_with_features
    from tests.problems.image_to_class.test_mnist import write_split
    from tests.problems.text_to_text.test_translation_anki import three_columns, write_zip

    root = tmp_path_factory.mktemp("device_placement")
    for train in (True, False):
        write_split(root / "mnist" / "raw", train=train, count=4, compressed=False)
    rng = np.random.default_rng(0)
    write_cifar10(root / "cifar", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 4),
                  rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 2))
    write_zip(root / "anki", three_columns())
    names = [f"class_{i}" for i in range(100)]
    write_cifar100(root / "cifar100", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [3, 5, 7, 9],
                   [1, 2, 3, 4], rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [1, 2], [1, 2],
                   fine_label_names=names, coarse_label_names=names[:20])
    _, clevr = write_clevr_with_features(root / "clevr" / "CLEVR_v1.0")
    _, cogent = write_clevr_with_features(root / "cogent" / "CLEVR_CoGenT_v1.0", cogent=True)
    return {
        "mnist": str(root / "mnist"), "cifar": str(root / "cifar"), "cifar100": str(root / "cifar100"),
        "cogent": "\n".join(o for o in cogent if o.startswith("training.problem")),
        "sort_of_clevr": f"training.problem.data_folder={root / 'sort_of_clevr'}\ntraining.problem.num_scenes=4",
        "clevr": "\n".join(o for o in clevr if o.startswith("training.problem")),
        "anki": "\n".join([f"training.problem.data_folder={root / 'anki'}", "training.problem.language=fra",
                           "training.problem.synthetic=false"]),
    }


def build(case: tuple[str, list[str]], data: dict[str, str], **model_overrides: Any) -> tuple[Any, Model, list[Any]]:
    """The training problem of a case (a config and its overrides), the model (seeded) and the samples of one
    batch of 2."""
    config, overrides = case
    lines = [line for o in overrides for line in o.format(**data).split("\n")]
    lines += [f"model.{key}={value}" for key, value in model_overrides.items()]
    spec = validate(load_config([CONFIGS / config], [*lines, f"training.problem.batch_size={BATCH}"]))
    problem = build_problem(spec.splits["training"])
    apply_assets(problem, build_training_assets(problem))
    problem.seed(0)
    torch.manual_seed(0)
    model = build_model(spec, problem)
    return problem, model, [problem[i] for i in range(BATCH)]


# --- the two checks ------------------------------------------------------------------------------------------------
def tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a batch, an output or a statistic (nested dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def step(problem: Any, model: Model, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """What the trainer, validation and the tester do with a batch on the device: the one step."""
    done = run_step(problem, model, batch, check_first=True)
    return done.batch, done.predictions, done.loss


def run_on_meta(problem: Any, model: Model, samples: list[Any], training: bool = True) -> None:
    """The forward and the loss with the model and a real batch on the meta device; every result on meta."""
    batch = to_device(problem.collate_fn(samples), "meta")
    model = copy.deepcopy(model).to("meta").train(training)
    with torch.set_grad_enabled(training):
        batch, predictions, loss = step(problem, model, batch)
    devices = {t.device.type for t in tensors([batch, predictions, loss])}
    assert devices == {"meta"}, f"results on {devices}"


def run_under_guard(problem: Any, model: Model, samples: list[Any], training: bool = True) -> None:
    """Collate, forward, loss, loss count, statistics and backward on the CPU with meta as the default device."""
    model.train(training)
    model.recording = not training  # what --visualize records must be on the device too
    if problem.is_generator:
        # A generated batch is drawn in the loader from the problem's own CPU generator (torch.rand(...,
        # generator=g) gives meta tensors under the guard): it is made before the guard, as a loader hands it over.
        batch = problem.collate_fn(samples)
    with torch.device("meta"), torch.set_grad_enabled(training):
        if not problem.is_generator:
            batch = problem.collate_fn(samples)
            made_on_default = [key for key, value in batch.items()
                               if any(t.device.type == "meta" for t in tensors(value))]
            assert not made_on_default, f"{problem.name}.collate_fn made {made_on_default} on the default device"
        batch, predictions, loss = step(problem, model, batch)
        problem.loss_count(batch, predictions)
        statistics = problem.statistics(batch, predictions)
        results = {"batch": batch, "predictions": predictions, "loss": loss, "statistics": statistics,
                   "internals": model.internals}
        elsewhere = [key for key, value in results.items() if any(t.device.type != "cpu" for t in tensors(value))]
        assert not elsewhere, f"{problem.name} with {model.name}: {elsewhere} made on the default device"
        if training:
            loss.backward()
    model.recording = False


# --- every registered model ----------------------------------------------------------------------------------------
def builtin(kind: str) -> set[str]:
    """The package's own components of a kind, read from its sources (tests register toy ones beside them)."""
    return set(builtin_index(kind))


def test_every_registered_model_has_a_case_and_one_check_list():
    assert set(CASES) == builtin("models")
    assert RUNS_ON_META.isdisjoint(GUARD_ONLY) and RUNS_ON_META | set(GUARD_ONLY) == set(CASES)


def check_every_mode(check: Any, name: str, data: dict[str, str]) -> None:
    """``check`` on model ``name`` in training and evaluation mode, and in its other evaluation settings."""
    problem, model, samples = build(CASES[name], data)
    check(problem, model, samples, training=True)
    check(problem, model, samples, training=False)
    for overrides in EVALUATION_VARIANTS.get(name, []):
        check(*build(CASES[name], data, **overrides), training=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_model_its_collate_loss_and_statistics_make_nothing_on_the_default_device(name, data):
    check_every_mode(run_under_guard, name, data)


@pytest.mark.parametrize("name", sorted(RUNS_ON_META))
def test_the_model_and_its_loss_run_on_the_meta_device(name, data):
    check_every_mode(run_on_meta, name, data)


@pytest.mark.parametrize("name", sorted(PROBLEM_CASES))
def test_every_other_problem_s_collate_loss_and_statistics_make_nothing_on_the_default_device(name, data):
    problem, model, samples = build(PROBLEM_CASES[name], data)
    assert problem.name == name
    run_under_guard(problem, model, samples, training=True)
    if model.name in RUNS_ON_META:
        run_on_meta(problem, model, samples, training=True)


def test_every_registered_problem_is_checked():
    of_models = {load_config([CONFIGS / config]).tree["training"]["problem"]["name"] for config, _ in CASES.values()}
    assert of_models | set(PROBLEM_CASES) == builtin("problems")


@pytest.mark.parametrize("name", sorted(GUARD_ONLY))
def test_a_guard_only_model_needs_a_host_read_not_a_placement_fix(name, data):
    problem, model, samples = build(CASES[name], data)
    with pytest.raises((RuntimeError, NotImplementedError)) as failure:
        run_on_meta(problem, model, samples, training=True)
        run_on_meta(problem, model, samples, training=False)
    message = str(failure.value)
    assert "expected device" not in message and "meta" in message, message


# --- the checks fail on a model that makes a tensor on the default device ----------------------------------------
class ZerosWithoutDevice(Model):
    """A toy sequence model with the bug: its initial state is ``torch.zeros(n)`` without ``device=``."""

    def __init__(self, fixed: bool = False) -> None:
        super().__init__(Model.Params())
        self.fixed = fixed
        self.layer = torch.nn.Linear(10, 8)
        self.input_definitions = {"sequences": DataDefinition((ANY, ANY, 10), "float32", "inputs")}
        self.output_definitions = {"predictions": DataDefinition((ANY, ANY, 8), "float32", "logits")}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        x = batch["sequences"]
        state = torch.zeros(8, device=x.device) if self.fixed else torch.zeros(8)
        return self.layer(x) + state


@pytest.mark.parametrize("check", [run_on_meta, run_under_guard], ids=["meta", "guard"])
def test_the_checks_catch_a_tensor_made_on_the_default_device(check):
    from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall

    problem = SerialRecall(SerialRecall.Params(batch_size=BATCH))
    problem.seed(0)
    check(problem, ZerosWithoutDevice(fixed=True), [0, 1])  # with device=: passes
    with pytest.raises(RuntimeError, match=re.escape("Tensor on device meta is not on the expected device cpu")
                       if check is run_under_guard else "meta"):
        check(problem, ZerosWithoutDevice(), [0, 1])



#: Problems whose statistics must read the device (they decide on the host what a batch holds).
STATISTICS_READ_BACK = {
    "SortOfCLEVR": "which question types a batch holds (counts.tolist(), once per batch)",
    "ShapeColorQuery": "as SortOfCLEVR", "CLEVR": "as SortOfCLEVR", "CLEVRCoGenT": "as SortOfCLEVR",
    "TranslationAnki": "BLEU and sentence accuracy need the words (tokens.tolist())",
}


def training_step_on_meta(problem: Any, model: Model, samples: list[Any]) -> None:
    """What ``Trainer.run_step`` computes before its backward, with everything on meta: any read back to the
    host (``.item()``, ``float()``, ``.tolist()``, a tensor as a bool) raises there."""
    batch = to_device(problem.collate_fn(samples), "meta")
    model = copy.deepcopy(model).to("meta").train(True)
    done = run_step(problem, model, batch, check_first=True)
    with torch.no_grad():
        row = device_row(done.loss, problem.statistics(done.batch, done.predictions.detach()))
    assert row and {t.device.type for t in tensors(list(row.values()))} <= {"meta"}


@pytest.mark.parametrize("name", sorted(RUNS_ON_META))
def test_the_training_step_reads_nothing_back_from_the_device(name, data):
    # a GPU runs ahead of the host only if the step never waits: the loss and the statistics stay tensors
    # until the Trainer reads a block of episodes back (workers/step.py)
    problem, model, samples = build(CASES[name], data)
    assert problem.name not in STATISTICS_READ_BACK
    training_step_on_meta(problem, model, samples)


@pytest.mark.parametrize("name", sorted(n for n in PROBLEM_CASES if n not in STATISTICS_READ_BACK))
def test_every_other_problem_s_training_step_reads_nothing_back(name, data):
    problem, model, samples = build(PROBLEM_CASES[name], data)
    if model.name in RUNS_ON_META:
        training_step_on_meta(problem, model, samples)

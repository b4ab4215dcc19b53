"""Exact statistics over a whole split: declared definitions, counts, grouped statistics, CSV columns."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from miprometheus.data import DataDefinition
from miprometheus.errors import HandshakeError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.problems.problem import Problem, ProblemParams
from miprometheus.registry import register_model, register_problem
from miprometheus.statistics import Aggregator, CSVWriter, Measure, StatisticDefinition, mean_of, read_csv
from miprometheus.workers import runs
from miprometheus.workers.run_folder import RunOptions
from tests.conftest import SHARED_MNIST


def options(tmp_path: Path) -> RunOptions:
    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"])


# --- the Aggregator --------------------------------------------------------------------------------
def test_a_smaller_last_batch_does_not_skew_the_mean():
    aggregator = Aggregator({"acc": StatisticDefinition("mean")})
    # 3 batches of 4 samples and a last batch of 1: 4 + 4 + 0 + 1 correct of 13
    for correct, samples in [(4, 4), (4, 4), (0, 4), (1, 1)]:
        aggregator.add(samples, Measure(0.5 * samples, samples), {"acc": mean_of(correct, samples)})
    result = aggregator.result()
    assert result["acc"] == 9 / 13  # the unweighted mean of batch accuracies would be 0.75
    assert result["acc_min"] == 0.0 and result["acc_max"] == 1.0
    assert result["loss"] == 0.5 and result["samples_aggregated"] == 13 and result["episodes_aggregated"] == 4


def test_a_float_mean_counts_the_samples_of_its_batch():
    aggregator = Aggregator({"acc": StatisticDefinition("mean")})
    aggregator.add(3, Measure(3.0, 3), {"acc": 1.0})
    aggregator.add(1, Measure(1.0, 1), {"acc": 0.0})
    assert aggregator.result()["acc"] == 0.75


def test_sum_max_min_combine_as_declared():
    aggregator = Aggregator({"n": StatisticDefinition("sum"), "longest": StatisticDefinition("max"),
                             "shortest": StatisticDefinition("min")})
    for n, length in [(2, 5), (3, 9), (1, 4)]:
        aggregator.add(n, Measure(0.0, n), {"n": n, "longest": length, "shortest": length})
    result = aggregator.result()
    assert (result["n"], result["longest"], result["shortest"]) == (6, 9, 4)


def test_grouped_statistics_carry_their_own_counts_and_may_be_absent():
    definitions = {"acc": StatisticDefinition("mean"), "acc_relational": StatisticDefinition("mean"),
                   "acc_count": StatisticDefinition("mean")}
    aggregator = Aggregator(definitions)
    # batch 1: 2 relational questions (1 right), no 'count' question at all (absent)
    aggregator.add(4, Measure(1.0, 4), {"acc": mean_of(3, 4), "acc_relational": mean_of(1, 2)})
    # batch 2: an empty group given as count 0 is absent too
    aggregator.add(2, Measure(1.0, 2), {"acc": mean_of(2, 2), "acc_relational": mean_of(3, 3),
                                        "acc_count": mean_of(0, 0)})
    result = aggregator.result()
    assert result["acc"] == 5 / 6
    assert result["acc_relational"] == 4 / 5
    assert math.isnan(result["acc_count"])  # never present: NaN, not 0, not a crash
    assert set(aggregator.columns()) == set(result)


def test_an_undeclared_statistic_is_an_error_not_a_silent_column():
    aggregator = Aggregator({"acc": StatisticDefinition("mean")})
    with pytest.raises(KeyError, match="acc_typo"):
        aggregator.add(1, Measure(0.0, 1), {"acc_typo": 1.0})
    with pytest.raises(ValueError, match="mean, sum, max, min"):
        StatisticDefinition("median")


def test_csv_columns_are_declared_not_taken_from_the_first_row(tmp_path):
    writer = CSVWriter(tmp_path / "s.csv", ["episode", "loss", "acc_relational", "acc_count"])
    writer.write({"episode": 1, "loss": 0.5, "acc_relational": 0.25})  # no 'count' question in this batch
    writer.write({"episode": 2, "loss": 0.4, "acc_relational": 0.5, "acc_count": 1.0})
    with pytest.raises(KeyError, match="acc_other"):
        writer.write({"episode": 3, "loss": 0.4, "acc_other": 1.0})
    writer.close()
    rows = read_csv(tmp_path / "s.csv")
    assert rows == [{"episode": "1", "loss": "0.5", "acc_relational": "0.25", "acc_count": ""},
                    {"episode": "2", "loss": "0.4", "acc_relational": "0.5", "acc_count": "1.0"}]


# --- a whole split through the Tester -----------------------------------------------------------------
@register_problem
class ParityGroups(Problem):
    """Test problem: 10 numbers; the target is the parity; statistics grouped by the number's size."""

    @dataclasses.dataclass
    class Params(ProblemParams):
        samples: int = param(10, "number of samples")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.values = torch.arange(params.samples, dtype=torch.float32)
        self.output_definitions = {"numbers": DataDefinition((-1, 1), "float32"),
                                   "targets": DataDefinition((-1,), "int64")}
        self.prediction_definitions = {"predictions": DataDefinition((-1, 2), "float32")}
        self.statistic_definitions = {"acc": StatisticDefinition("mean"),
                                      "acc_small": StatisticDefinition("mean", "numbers below 4"),
                                      "acc_huge": StatisticDefinition("mean", "numbers above 100: none")}

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"numbers": self.values[index:index + 1], "targets": torch.tensor(int(self.values[index]) % 2)}

    def loss(self, batch, predictions):
        return torch.nn.functional.cross_entropy(predictions, batch["targets"])

    def statistics(self, batch, predictions):
        correct = (predictions.argmax(1) == batch["targets"]).float()
        small = batch["numbers"][:, 0] < 4
        huge = batch["numbers"][:, 0] > 100
        return {"acc": mean_of(correct.sum(), len(correct)),
                "acc_small": mean_of(correct[small].sum(), small.sum()),
                "acc_huge": mean_of(correct[huge].sum(), huge.sum())}


@register_model
class FirstBitGuess(Model):
    """Test model: predicts 'odd' for numbers whose value is in a fixed set; reads only what it declares."""

    @dataclasses.dataclass
    class Params:
        odd: list[int] = param(factory=lambda: [1, 9], doc="numbers predicted odd")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.input_definitions = {"numbers": DataDefinition((-1, 1), "float32")}
        self.output_definitions = {"predictions": DataDefinition((-1, 2), "float32")}

    def forward(self, batch):
        assert set(batch) == {"numbers"}, f"the model was given {sorted(batch)}"
        odd = torch.isin(batch["numbers"][:, 0].long(), torch.tensor(self.params.odd)).float()
        return torch.stack([1 - odd, odd], dim=1) * 4 + self.weight


CONFIG = """
training:
  problem: {name: ParityGroups, batch_size: 4}
  terminal_conditions: {episode_limit: 1}
  optimizer: {name: SGD, lr: 0.0}
validation:
  problem: {name: ParityGroups, batch_size: 4}
testing:
  problem: {name: ParityGroups, batch_size: 4}
model: {name: FirstBitGuess}
"""


def test_the_split_aggregate_equals_the_figure_on_all_samples_at_once(tmp_path):
    config = tmp_path / "parity.yaml"
    config.write_text(CONFIG)
    # 10 samples in batches of 4, 4, 2: numbers 0..9; predicted odd: 1 and 9 -> wrong on 3, 5, 7
    result = runs.train([str(config)], [], options(tmp_path), test_after=True)
    assert result.test["acc"] == 7 / 10  # unweighted over batches: (3/4 + 2/4 + 2/2) / 3 = 0.75
    assert result.test["acc_small"] == 3 / 4  # 0, 1, 2 right; 3 wrong
    assert math.isnan(result.test["acc_huge"])
    assert result.test["samples_aggregated"] == 10 and result.test["episodes_aggregated"] == 3
    assert result.validation["acc"] == 7 / 10
    model = FirstBitGuess(FirstBitGuess.Params())
    numbers = torch.arange(10.0).unsqueeze(1)
    logits = model({"numbers": numbers})
    targets = torch.arange(10) % 2
    expected_loss = torch.nn.functional.cross_entropy(logits, targets).item()
    assert result.test["loss"] == pytest.approx(expected_loss, rel=1e-6)
    agg = read_csv(result.test_folder / "testing_set_agg_statistics.csv")[0]
    assert float(agg["acc"]) == 0.7 and agg["acc_huge"] == "nan"
    columns = list(read_csv(result.folder / "validation_statistics.csv")[0])
    assert "acc_huge" in columns and "acc_small_std" in columns


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")
def test_mnist_test_accuracy_with_a_smaller_last_batch_is_exact(tmp_path):
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.workers.tester import Tester

    config = tmp_path / "mnist.yaml"
    config.write_text(f"""
testing:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 300, download: false}}
  sampler: {{name: SubsetSequentialSampler, indices: [0, 1000]}}
model: {{name: SimpleConvNet}}
""")
    tester = Tester(validate(load_config([config]), required=("testing", "model")), seed=0)
    rows, agg = tester.run()
    assert len(rows) == 4 and agg["episodes_aggregated"] == 4  # 300, 300, 300, 100
    problem = tester.problem
    everything = problem.collate_fn([problem[i] for i in range(1000)])
    tester.model.eval()
    with torch.no_grad():
        logits = tester.model({"images": everything["images"]})
    expected = (logits.argmax(1) == everything["targets"]).double().mean().item()
    assert agg["acc"] == pytest.approx(expected, abs=1e-12)
    assert agg["loss"] == pytest.approx(problem.loss(everything, logits).item(), rel=1e-5)


def test_a_problem_returning_an_undeclared_statistic_is_named(tmp_path, tiny_config, monkeypatch):
    from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall

    original = SerialRecall.statistics
    monkeypatch.setattr(SerialRecall, "statistics", lambda self, b, p: {**original(self, b, p), "acc_typo": 1.0})
    with pytest.raises(HandshakeError, match="'acc_typo'.*statistic_definitions"):
        runs.train([str(tiny_config)], [], options(tmp_path))

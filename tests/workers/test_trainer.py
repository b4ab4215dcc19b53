"""The Trainer and Tester in-process: experiment folder, statistics, checkpoints, terminal conditions."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
import torch
import yaml

from miprometheus.checkpoint import load_checkpoint
from miprometheus.errors import HandshakeError, RunFailed
from miprometheus.files import create_unique_dir
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.registry import register_model
from miprometheus.statistics import read_csv
from miprometheus.workers import runs
from miprometheus.workers.callbacks import Callback
from miprometheus.workers.run_folder import RunOptions
from tests.conftest import SHARED_MNIST


def options(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["test"], **kw)


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def train(tmp_path: Path, config: Path, *overrides: str, **kw) -> runs.TrainResult:
    test_after = kw.pop("test", False)
    return runs.train([str(config)], list(overrides), options(tmp_path, **kw), test_after=test_after)


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_experiment_folder_is_complete_and_self_describing(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config)
    folder = result.folder
    assert folder.parent.name == "LSTM" and folder.parent.parent.name == "SerialRecall"
    for name in ["training_configuration.yaml", "run_info.json", "trainer.log", "training_statistics.csv",
                 "validation_statistics.csv", "models/model_best.pt", "models/model_last.pt"]:
        assert (folder / name).is_file(), name
    rows = read_csv(folder / "training_statistics.csv")
    assert len(rows) == 60
    assert list(rows[0]) == ["episode", "epoch", "loss", "acc", "seq_length", "max_seq_length", "batch_size", "time"]
    assert [int(r["episode"]) for r in rows] == list(range(1, 61))
    assert {int(r["epoch"]) for r in rows} == {0, 1, 2}  # 320 samples / 16 = 20 episodes per epoch
    validation = read_csv(folder / "validation_statistics.csv")
    assert [int(r["episode"]) for r in validation] == [20, 40, 60]
    for column in ["loss", "loss_min", "loss_max", "loss_std", "acc", "acc_min", "acc_max", "acc_std",
                   "samples_aggregated", "episodes_aggregated"]:
        assert column in validation[0]
    assert float(validation[0]["samples_aggregated"]) == 64
    info = json.loads((folder / "run_info.json").read_text())
    assert info["status"] == "completed" and info["termination_cause"] == "limit"
    assert info["seed"] == 7 and info["episodes"] == 60
    for key in ["command_line", "git", "versions", "host", "device", "start_time", "end_time"]:
        assert info[key], key
    assert info["versions"]["torch"] == torch.__version__
    best = load_checkpoint(folder / "models" / "model_best.pt")
    best_loss = min(float(r["loss"]) for r in validation)
    assert best["statistics"]["loss"] == pytest.approx(best_loss)
    last = torch.load(folder / "models" / "model_last.pt", weights_only=True)
    assert last["trainer"]["episode"] == 60
    saved = yaml.safe_load((folder / "training_configuration.yaml").read_text())
    assert saved["model"] == {"name": "LSTM", "input_item_size": 10, "output_item_size": 8, "hidden_size": 16,
                              "num_layers": 1, "dropout": 0.0}  # problem-provided values recorded


def test_saved_config_reproduces_the_run(tmp_path, tiny_config):
    first = train(tmp_path, tiny_config)
    second = train(tmp_path, first.folder / "training_configuration.yaml")
    assert first.folder != second.folder
    assert without_time(read_csv(first.folder / "training_statistics.csv")) == \
        without_time(read_csv(second.folder / "training_statistics.csv"))
    a = load_checkpoint(first.folder / "models" / "model_last.pt")["model"]
    b = load_checkpoint(second.folder / "models" / "model_last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seed_minus_one_is_drawn_and_recorded(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.seed=-1", "training.terminal_conditions.episode_limit=3")
    seed = json.loads((result.folder / "run_info.json").read_text())["seed"]
    saved = yaml.safe_load((result.folder / "training_configuration.yaml").read_text())
    assert isinstance(seed, int) and seed >= 0 and saved["training"]["seed"] == seed


@register_model
class NaNAfterFiveEpisodes(Model):
    """Test model: an LSTM whose output becomes NaN from the sixth training forward pass on."""

    @dataclasses.dataclass
    class Params:
        input_item_size: int = param(doc="input size", from_problem=True)
        output_item_size: int = param(doc="output size", from_problem=True)

    def __init__(self, params):
        super().__init__(params)
        from miprometheus.data import DataDefinition

        self.layer = torch.nn.Linear(params.input_item_size, params.output_item_size)
        self.calls = 0
        self.input_definitions = {"sequences": DataDefinition((-1, -1, params.input_item_size), "float32")}
        self.output_definitions = {"predictions": DataDefinition((-1, -1, params.output_item_size), "float32")}

    def forward(self, batch):
        if self.training:
            self.calls += 1
        out = self.layer(batch["sequences"])
        return out * float("nan") if self.calls > 5 else out


def test_nan_loss_stops_with_cause_nan_and_keeps_best(tmp_path, tiny_config):
    config = write(tmp_path, tiny_config.read_text().replace("{name: LSTM, hidden_size: 16}",
                                                             "{name: NaNAfterFiveEpisodes}"), "nan.yaml")
    with pytest.raises(RunFailed) as error:
        train(tmp_path, config, "validation.interval=2")
    assert error.value.exit_code == 1 and "nan" in str(error.value).lower()
    folder = next((tmp_path / "experiments").rglob("run_info.json")).parent
    info = json.loads((folder / "run_info.json").read_text())
    assert info["termination_cause"] == "nan" and info["status"] == "failed"
    assert len(read_csv(folder / "training_statistics.csv")) == 5
    assert load_checkpoint(folder / "models" / "model_best.pt")["episode"] == 4


def test_early_stopping(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.early_stopping={patience: 2, min_delta: 100}",
                   "validation.interval=5", "training.terminal_conditions.episode_limit=1000")
    # the first validation sets the best; two more without a 100-point improvement stop the run
    assert result.cause == "early_stop" and result.episodes == 15


def test_loss_stop_uses_validation_loss(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.terminal_conditions.loss_stop=100", "validation.interval=7")
    assert result.cause == "converged" and result.episodes == 7


def test_curriculum_grows_the_training_length_each_epoch(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.curriculum_learning={initial_max_sequence_length: 1}",
                   "training.problem.size=64", "training.terminal_conditions.episode_limit=24")
    rows = read_csv(result.folder / "training_statistics.csv")
    per_epoch = {}
    for r in rows:
        per_epoch.setdefault(int(r["epoch"]), set()).add(float(r["max_seq_length"]))
    assert per_epoch == {0: {1.0}, 1: {2.0}, 2: {3.0}, 3: {4.0}, 4: {4.0}, 5: {4.0}}
    assert all(float(r["seq_length"]) <= float(r["max_seq_length"]) for r in rows)


def test_scheduler_steps_every_epoch(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.scheduler={name: StepLR, step_size: 1, gamma: 0.5}")
    last = load_checkpoint(result.folder / "models" / "model_last.pt")
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5**3)


def test_gradient_clipping_clamps_each_component(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config, "training.optimizer={name: SGD, lr: 1.0}", "training.gradient_clipping=1e-6",
                   "training.terminal_conditions.episode_limit=1", "validation.interval=null")
    again = train(tmp_path, tiny_config, "training.optimizer={name: SGD, lr: 0.0}",
                  "training.terminal_conditions.episode_limit=1", "validation.interval=null")
    moved = load_checkpoint(result.folder / "models" / "model_last.pt")["model"]
    initial = load_checkpoint(again.folder / "models" / "model_last.pt")["model"]
    biggest = max((moved[k] - initial[k]).abs().max().item() for k in moved)
    assert 0 < biggest <= 1e-6 * 1.01  # float32 rounding of w - 1e-6


def test_tensorboard_events_are_written_and_read_back(tmp_path, tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tmp_path, tiny_config, tensorboard=1)
    events = EventAccumulator(str(result.folder / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("training/loss")] == list(range(1, 61))
    assert [e.step for e in events.Scalars("validation/acc")] == [20, 40, 60]
    first_loss = float(read_csv(result.folder / "training_statistics.csv")[0]["loss"])
    assert events.Scalars("training/loss")[0].value == pytest.approx(first_loss, rel=1e-6)
    assert any(tag.startswith("weights/") for tag in events.Tags()["histograms"])


def test_tester_writes_per_batch_and_aggregated_statistics(tmp_path, tiny_config):
    result = train(tmp_path, tiny_config)
    folder, agg = runs.test(result.folder, [], options(tmp_path))
    assert folder.parent == result.folder and folder.name.startswith("test_")
    rows = read_csv(folder / "testing_statistics.csv")
    assert len(rows) == 4  # 64 samples / 16
    agg_rows = read_csv(folder / "testing_set_agg_statistics.csv")
    assert len(agg_rows) == 1
    for column in ["loss", "loss_min", "loss_max", "loss_std", "acc", "acc_min", "acc_max", "acc_std"]:
        assert column in agg_rows[0]
    assert float(agg_rows[0]["acc"]) == pytest.approx(sum(float(r["acc"]) for r in rows) / 4)
    saved = yaml.safe_load((folder / "testing_configuration.yaml").read_text())
    assert saved["testing"]["checkpoint"].endswith("model_best.pt")
    # the same weights through a config file and --model give the same result, in a new test folder
    folder2, agg2 = runs.test(tmp_path / "tiny.yaml", [], options(tmp_path),
                              checkpoint=result.folder / "models" / "model_best.pt")
    assert folder2 != folder and agg2["acc"] == pytest.approx(agg["acc"])
    # a test setting changed by an override: longer sequences
    folder3, agg3 = runs.test(result.folder, ["testing.problem.min_sequence_length=3",
                                              "testing.problem.max_sequence_length=3"], options(tmp_path))
    assert {float(r["seq_length"]) for r in read_csv(folder3 / "testing_statistics.csv")} == {3.0}


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")
def test_lenet5_learns_real_mnist_digits_in_two_epochs(tmp_path):
    config = Path(__file__).resolve().parents[2] / "configs" / "vision" / "lenet5_mnist_t10k.yaml"
    result = train(tmp_path, config, f"training.problem.data_folder={SHARED_MNIST}",
                   "training.sampler.indices=[0, 4000]", "training.terminal_conditions.epoch_limit=2",
                   "validation.interval=null", "training.seed=1", test=True)
    assert result.episodes == 126  # 2 epochs of ceil(4000 / 64)
    assert result.validation["acc"] > 0.8  # chance: 0.1
    assert result.test["acc"] > 0.8 and result.test["samples_aggregated"] == 1000


def test_sampler_reads_an_index_file_relative_to_the_config(tmp_path):
    (tmp_path / "indices.txt").write_text(",".join(str(i) for i in range(100, 164)) + "\n")
    mnist = f"""
training:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 32, download: false}}
  sampler: {{name: SubsetSequentialSampler, indices: indices.txt}}
  terminal_conditions: {{epoch_limit: 1}}
  seed: 1
model: {{name: SimpleConvNet}}
"""
    if not SHARED_MNIST.is_dir():
        pytest.skip("shared MNIST data not present")
    result = train(tmp_path, write(tmp_path, mnist, "mnist.yaml"))
    assert result.episodes == 2


def test_first_batch_is_checked_against_the_definitions(tmp_path, tiny_config, monkeypatch):
    from miprometheus.data import DataDefinition
    from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall

    original = SerialRecall.__init__

    def lying_init(self, params):
        original(self, params)
        self.output_definitions = {**self.output_definitions,
                                   "masks": DataDefinition((-1, -1, 1), "float32", "wrongly declared")}

    monkeypatch.setattr(SerialRecall, "__init__", lying_init)
    with pytest.raises(HandshakeError, match="masks.*uint8"):
        train(tmp_path, tiny_config)


def test_first_batch_is_checked_once_for_a_model_returning_a_plain_tensor(tmp_path, tiny_config, monkeypatch):
    # before: the trainer set its "checked" flag only when the model returned further outputs, so an LSTM
    # (a plain tensor) had its batch and output checked against the definitions at every one of its episodes
    from miprometheus.workers import components

    calls = []
    original = components.check_values
    monkeypatch.setattr(components, "check_values", lambda *args: calls.append(args[0]) or original(*args))
    train(tmp_path, tiny_config, "training.terminal_conditions.episode_limit=5", "validation.interval=null")
    # the batch and the output of the first training batch; validation passes are not checked
    assert len(calls) == 2, calls


def test_folders_are_never_shared_even_in_the_same_second(tmp_path):
    made: list[Path] = []
    lock = threading.Lock()

    def make() -> None:
        folder = create_unique_dir(tmp_path, "20260101_000000")
        with lock:
            made.append(folder)

    threads = [threading.Thread(target=make) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 20


def test_two_experiments_in_one_process_do_not_share_state(tmp_path, tiny_config):
    a = train(tmp_path, tiny_config, "training.terminal_conditions.episode_limit=5")
    b = train(tmp_path, tiny_config, "training.terminal_conditions.episode_limit=5", "model.hidden_size=8")
    assert "hidden_size: 8" in (b.folder / "training_configuration.yaml").read_text()
    assert "hidden_size: 16" in (a.folder / "training_configuration.yaml").read_text()
    assert (a.folder / "trainer.log").read_text() != (b.folder / "trainer.log").read_text()


def test_resuming_a_finished_run_trains_nothing_more_and_can_extend_it(tmp_path, tiny_config):
    first = train(tmp_path, tiny_config, "training.terminal_conditions.episode_limit=10")
    again = runs.train([], [], options(tmp_path), resume=first.folder)
    assert again.episodes == 10 and len(read_csv(first.folder / "training_statistics.csv")) == 10
    longer = runs.train([], ["training.terminal_conditions.episode_limit=15"], options(tmp_path), resume=first.folder)
    assert longer.episodes == 15 and len(read_csv(first.folder / "training_statistics.csv")) == 15
    info = json.loads((first.folder / "run_info.json").read_text())
    assert [r["from_episode"] for r in info["resumes"]] == [10, 10]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST data not present")
def test_dataloader_workers_give_the_same_run_as_the_main_process(tmp_path):
    text = f"""
training:
  problem: {{name: MNIST, data_folder: {SHARED_MNIST}, use_train_data: false, batch_size: 32, download: false}}
  sampler: {{name: SubsetRandomSampler, indices: [0, 320]}}
  terminal_conditions: {{epoch_limit: 2}}
  seed: 5
model: {{name: SimpleConvNet}}
"""
    config = write(tmp_path, text, "mnist.yaml")
    # in fresh processes: forking DataLoader workers from this test process is unsafe once other tests
    # have started threads in it (a Ray client, for one)
    from tests.conftest import experiment_dirs, run_mip

    run_mip("train", config, "--expdir", tmp_path / "main", check=True)
    run_mip("train", config, "training.dataloader={num_workers: 2, persistent_workers: true}",
            "--expdir", tmp_path / "workers", check=True)
    main, workers = experiment_dirs(tmp_path / "main")[0], experiment_dirs(tmp_path / "workers")[0]
    assert without_time(read_csv(main / "training_statistics.csv")) == \
        without_time(read_csv(workers / "training_statistics.csv"))


def test_statistics_are_read_back_in_blocks_with_the_same_rows(tmp_path, tiny_config, monkeypatch):
    # the step keeps its loss and statistics on the device; they come back every log_interval episodes
    # (one transfer per block), and the CSV holds the same rows as when read back at every episode
    from miprometheus.workers import trainer as trainer_module

    blocks: list[int] = []
    original = trainer_module.read_rows
    monkeypatch.setattr(trainer_module, "read_rows", lambda rows: blocks.append(len(rows)) or original(rows))
    every = train(tmp_path / "every", tiny_config, log_interval=1)
    assert blocks == [1] * 60
    blocks.clear()
    blocked = train(tmp_path / "blocks", tiny_config, log_interval=10)
    assert blocks == [10] * 6
    assert without_time(read_csv(every.folder / "training_statistics.csv")) == \
        without_time(read_csv(blocked.folder / "training_statistics.csv"))
    validations = [read_csv(run.folder / "validation_statistics.csv") for run in (every, blocked)]
    assert validations[0] == validations[1]


def test_a_nan_found_in_a_block_keeps_the_last_good_checkpoint(tmp_path, tiny_config):
    # episode 6 is NaN; its block is read back at the checkpoint of episode 6, which is then not written:
    # model_last.pt stays the one of episode 4, the CSV stops at episode 5
    config = write(tmp_path, tiny_config.read_text().replace("{name: LSTM, hidden_size: 16}",
                                                             "{name: NaNAfterFiveEpisodes}"), "nan.yaml")
    with pytest.raises(RunFailed, match="episode 6"):
        train(tmp_path, config, "training.checkpoint_interval=2", log_interval=4)
    folder = next((tmp_path / "experiments").rglob("run_info.json")).parent
    assert json.loads((folder / "run_info.json").read_text())["termination_cause"] == "nan"
    assert [int(r["episode"]) for r in read_csv(folder / "training_statistics.csv")] == [1, 2, 3, 4, 5]
    assert load_checkpoint(folder / "models" / "model_last.pt")["trainer"]["episode"] == 4
    assert not (folder / "models" / "model_best.pt").exists()  # never validated, and a NaN run has no "best"


def test_an_exception_reaches_every_callback_then_train_end(tmp_path, tiny_config):
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.workers import callbacks as cb
    from miprometheus.workers.run_folder import ExperimentFolder
    from miprometheus.workers.trainer import Trainer

    seen: list[tuple[str, object]] = []

    class Explodes(cb.Callback):
        def on_episode_end(self, trainer):
            if trainer.state.episode == 2:
                raise RuntimeError("boom")

        def on_train_end(self, trainer, cause):
            raise RuntimeError("a failing on_train_end does not stop the others")

    class Records(cb.Callback):
        def on_exception(self, trainer, error):
            seen.append(("exception", str(error)))

        def on_train_end(self, trainer, cause):
            seen.append(("end", cause))

    spec = validate(load_config([tiny_config]))
    trainer = Trainer(spec, seed=1, callbacks=[Explodes(), Records()])
    trainer.attach(ExperimentFolder(tmp_path, options(tmp_path)))
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit()
    assert seen == [("exception", "boom"), ("end", "error")]
    assert trainer.stop_cause == "error"


class ExplodesAtEpisode3(Callback):
    def on_episode_end(self, trainer):
        if trainer.state.episode == 3:
            raise RuntimeError("a callback failed")


def test_callbacks_close_their_files_when_training_raises(tmp_path, tiny_config):
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.workers import callbacks as cb
    from miprometheus.workers.run_folder import ExperimentFolder
    from miprometheus.workers.trainer import Trainer

    spec = validate(load_config([tiny_config]))
    trainer = Trainer(spec, seed=1, callbacks=[*cb.default_callbacks(spec, options(tmp_path)), ExplodesAtEpisode3()])
    experiment = ExperimentFolder(tmp_path, options(tmp_path))
    trainer.attach(experiment)
    with pytest.raises(RuntimeError, match="a callback failed"):
        trainer.fit()
    csv = next(c for c in trainer.callbacks if isinstance(c, cb.StatisticsCSVCallback))
    assert csv.training._handle is None and csv.validation._handle is None  # closed
    assert not (tmp_path / "models" / "model_best.pt").exists()  # no "best" made of a failed run
    assert (tmp_path / "training_statistics.csv").read_text().count("\n") == 4  # header + 3 rows
    experiment.close()


def test_a_plateau_scheduler_stepped_every_episode_reads_that_episode_loss(tmp_path, tiny_config):
    # before: stepped per episode, ReduceLROnPlateau was given the previous episode's statistics, which at the
    # first episode do not exist yet (TypeError: 'NoneType' object is not subscriptable)
    result = train(tmp_path, tiny_config, "training.scheduler={name: ReduceLROnPlateau, step_every: episode, "
                   "patience: 0, factor: 0.5}", "training.terminal_conditions.episode_limit=30", log_interval=10)
    last = load_checkpoint(result.folder / "models" / "model_last.pt")
    assert last["optimizer"]["param_groups"][0]["lr"] < 0.01  # the loss did not improve at every episode
    assert len(read_csv(result.folder / "training_statistics.csv")) == 30

"""MLflow tracking against real trackers: a SQLite database MLflow writes itself, and an ``mlflow server`` that
the tests start on loopback (SQLite backend store in a temporary folder), read back through MLflow's client.

The server starts once per module (tens of seconds on a loaded machine); the tests that need it are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from miprometheus.layout import MLFLOW_RUN, RUN_INFO, TRAINER_LOG, TRAINING_CONFIG, TRAINING_CSV
from tests.conftest import TINY_SERIAL, experiment_dirs, run_mip, start_mip

mlflow = pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install miprometheus[mlflow]")
from mlflow.tracking import MlflowClient  # noqa: E402

SERVER_START_SECONDS = 240  # an mlflow server imports a lot: tens of seconds on a loaded 2-core machine


def tracked(uri: str, experiment: str = "tests", **values: object) -> str:
    """TINY_SERIAL (60 episodes, validation every 20, a test split) logging to ``uri``."""
    extra = "".join(f", {key}: {json.dumps(value)}" for key, value in values.items())
    return TINY_SERIAL + f"tracking:\n  mlflow: {{uri: {json.dumps(uri)}, experiment: {experiment}{extra}}}\n"


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def recorded_run_id(folder: Path) -> str:
    return json.loads((folder / MLFLOW_RUN).read_text())["runs"][0]["run_id"]


def artifact_paths(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory) -> str:
    """One SQLite tracking database for the module (MLflow builds its tables once: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _train(config: Path, expdir: Path, overrides: list[str] | None = None, resume: Path | None = None,
           test: bool = False):
    from miprometheus.workers import runs
    from miprometheus.workers.run_folder import RunOptions

    return runs.train([] if resume else [str(config)], overrides or [], RunOptions(expdir=expdir, progress=False),
                      resume=resume, test_after=test)


# --- configuration and installation ----------------------------------------------------------------------------


def test_the_tracking_section_is_checked_like_every_section(tmp_path):
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.errors import ConfigError

    config = tmp_path / "exp.yaml"
    config.write_text(TINY_SERIAL + "tracking:\n  mlflow: {uri: ftp://host/x, experimant: e}\n")
    with pytest.raises(ConfigError) as refused:
        validate(load_config([config]))
    message = str(refused.value)
    assert "unknown key 'tracking.mlflow.experimant'" in message
    assert "Did you mean 'tracking.mlflow.experiment'" in message
    config.write_text(TINY_SERIAL + "tracking:\n  mlflow: {uri: ftp://host/x}\n  wandb: {}\n")
    message = str(pytest.raises(ConfigError, validate, load_config([config])).value)
    assert "unknown key 'tracking.wandb'" in message
    assert "exp.yaml:" in message and "tracking.mlflow" in message and "ftp://host/x" in message  # the scheme
    config.write_text(TINY_SERIAL + "tracking:\n  mlflow: {uri: sqlite:///runs/mlflow.db, flush_timeout: -1}\n")
    assert "'tracking.mlflow.flush_timeout' must be between 0 and 3600" in str(
        pytest.raises(ConfigError, validate, load_config([config])).value)
    config.write_text(TINY_SERIAL + "tracking:\n  mlflow: {uri: sqlite:///runs/mlflow.db}\n")
    spec = validate(load_config([config]))
    # a relative SQLite file is relative to the config file, and saved absolute
    assert spec.tracking.mlflow.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert spec.effective_tree()["tracking"]["mlflow"]["uri"] == spec.tracking.mlflow.uri


def test_tracking_without_mlflow_installed_is_bad_input_naming_the_extra(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(tracked("sqlite:///mlflow.db"))
    code = ("import sys; sys.modules['mlflow'] = None; from miprometheus.cli import main; "
            f"sys.exit(main(['train', {str(config)!r}, '--expdir', {str(tmp_path / 'runs')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "pip install miprometheus[mlflow]" in result.stderr and "exp.yaml:" in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before any folder was made


def test_import_and_help_never_import_mlflow():
    code = ("import sys, contextlib, io; import miprometheus, miprometheus.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()): miprometheus.cli.main(['train', '--help'])\n")
    code_end = "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    result = subprocess.run([sys.executable, "-c", f"try:\n  exec({code!r})\nexcept SystemExit: pass\n{code_end}"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_a_config_becomes_parameters_by_dotted_key_without_its_tracking_section():
    from miprometheus.workers.tracking.mlflow_values import MAX_PARAM_LENGTH, config_params

    params = config_params({"training": {"optimizer": {"name": "Adam", "lr": 0.001, "betas": [0.9, 0.99]},
                                         "seed": 7, "scheduler": None},
                            "model": {"name": "LSTM", "init_from": {"prefix": {}}, "note": "x" * 7000},
                            "tracking": {"mlflow": {"uri": "http://h:1"}}})
    assert params == {"training.optimizer.name": "Adam", "training.optimizer.lr": "0.001",
                      "training.optimizer.betas": "[0.9, 0.99]", "training.seed": "7", "training.scheduler": "null",
                      "model.name": "LSTM", "model.init_from.prefix": "{}", "model.note": "x" * MAX_PARAM_LENGTH}


# --- a SQLite database, no server ------------------------------------------------------------------------------


def test_an_experiment_and_its_test_logged_to_a_sqlite_database_read_back(tmp_path, sqlite_uri):
    config = tmp_path / "exp.yaml"
    config.write_text(tracked(sqlite_uri, "sqlite_experiment") + "description: a tracked run\n")
    result = _train(config, tmp_path / "runs", test=True)
    folder = result.folder
    client = MlflowClient(sqlite_uri)
    run = client.get_run(recorded_run_id(folder))
    assert run.info.status == "FINISHED" and run.info.run_name == folder.name
    assert client.get_experiment(run.info.experiment_id).name == "sqlite_experiment"
    params = run.data.params
    assert params["training.optimizer.lr"] == "0.01" and params["model.hidden_size"] == "16"
    assert params["training.seed"] == "7" and params["model.output_item_size"] == "8"  # a value the problem supplied
    assert not any(key.startswith("tracking.") for key in params)
    # every training episode at its step, each validation at its episode, the test at the tested weights' episode
    assert [step for step, _ in history(client, run.info.run_id, "training/loss")] == list(range(1, 61))
    rows = (folder / TRAINING_CSV).read_text().splitlines()[1:]
    csv_losses = [float(row.split(",")[2]) for row in rows]
    assert [value for _, value in history(client, run.info.run_id, "training/loss")] == pytest.approx(csv_losses)
    assert [step for step, _ in history(client, run.info.run_id, "validation/loss")] == [20, 40, 60]
    best = json.loads((folder / RUN_INFO).read_text())["best_episode"]
    assert history(client, run.info.run_id, "test/acc") == [(best, pytest.approx(result.test["acc"]))]
    tags = run.data.tags
    assert (tags["mip.problem"], tags["mip.model"], tags["mip.seed"]) == ("SerialRecall", "LSTM", "7")
    assert tags["mip.termination_cause"] == "limit" and tags["mlflow.note.content"] == "a tracked run"
    assert tags["mlflow.source.git.commit"] == json.loads((folder / RUN_INFO).read_text())["git"]["package"]["commit"]
    assert {TRAINING_CONFIG, RUN_INFO, result.test_folder.name} <= artifact_paths(client, run.info.run_id)
    # artifacts live beside the database, not in the folder the run started in
    assert Path(sqlite_uri[len("sqlite:///"):]).parent.joinpath("mlartifacts").is_dir()


def test_a_resumed_experiment_continues_its_run_and_keeps_its_first_parameters(tmp_path, sqlite_uri):
    config = tmp_path / "exp.yaml"
    config.write_text(tracked(sqlite_uri, "resumed").replace("episode_limit: 60", "episode_limit: 40"))
    folder = _train(config, tmp_path / "runs").folder
    run_id = recorded_run_id(folder)
    _train(config, tmp_path / "runs", ["training.terminal_conditions.episode_limit=60"], resume=folder)
    assert recorded_run_id(folder) == run_id  # one run for the experiment
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run_id, "training/loss")] == list(range(1, 61))
    assert [step for step, _ in history(client, run_id, "validation/loss")] == [20, 40, 60]
    assert run.data.params["training.terminal_conditions.episode_limit"] == "40"  # MLflow keeps the first value
    assert "keeps the first values of its parameters: training.terminal_conditions.episode_limit" in (
        folder / TRAINER_LOG).read_text()


def test_an_unreachable_tracker_is_a_warning_and_training_completes(tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "exp.yaml"
    config.write_text(tracked(f"http://127.0.0.1:{port}", flush_timeout=1))
    started = time.monotonic()
    result = _train(config, tmp_path / "runs", test=True)
    assert result.cause == "limit" and result.episodes == 60 and result.test is not None
    assert time.monotonic() - started < 60
    log = (result.folder / TRAINER_LOG).read_text()
    assert f"MLflow at http://127.0.0.1:{port} does not answer" in log
    assert "were not sent. The folder has them all: send them with mip grid log-to-mlflow" in log
    assert not (result.folder / MLFLOW_RUN).exists()


def test_values_past_the_memory_bound_wait_in_a_file_and_all_arrive(tmp_path, sqlite_uri, monkeypatch):
    from miprometheus.workers.tracking import mlflow_engine
    from miprometheus.workers.tracking.mlflow_values import metric_entries

    monkeypatch.setattr(mlflow_engine, "MAX_QUEUED_VALUES", 100)
    events: list[dict] = []
    log = mlflow_engine.RunLog(events.append)
    log.put("open", {"uri": sqlite_uri, "experiment": "spill", "run_name": "spill", "folder": str(tmp_path)})
    for episode in range(1, 1001):  # nothing is sent yet: 2,000 values queue up
        log.put("metrics", {"entries": metric_entries("training", {"loss": 1.0 / episode, "acc": 0.5}, episode)})
    assert log._queued <= 100 and log._spill_end > 0  # the rest waits in the temporary file
    log.put("end", {"status": "FINISHED"})
    log.close()
    log.run()
    assert log.unsent == log.refused == 0 and log.left() == (0, 0)
    assert events == [{"event": "run", "run_id": log.run_id}]  # no warning
    client = MlflowClient(sqlite_uri)
    assert history(client, log.run_id, "training/loss") == [(e, pytest.approx(1.0 / e)) for e in range(1, 1001)]
    assert len(history(client, log.run_id, "training/acc")) == 1000
    assert client.get_run(log.run_id).info.status == "FINISHED"


def test_an_experiment_folder_is_uploaded_afterwards_and_a_second_upload_sends_nothing(tmp_path, sqlite_uri):
    from miprometheus.workers.grid.mlflow_grid import log_to_mlflow

    config = tmp_path / "exp.yaml"
    config.write_text(TINY_SERIAL)
    folder = _train(config, tmp_path / "runs", test=True).folder
    first = log_to_mlflow(tmp_path / "runs", sqlite_uri, "uploaded", report=lambda line: None)
    assert first.runs == 1 and first.values > 60
    client = MlflowClient(sqlite_uri)
    run = client.get_run(recorded_run_id(folder))
    assert run.info.status == "FINISHED" and run.data.params["model.hidden_size"] == "16"
    assert [step for step, _ in history(client, run.info.run_id, "training/loss")] == list(range(1, 61))
    assert "test/acc" in run.data.metrics and TRAINING_CONFIG in artifact_paths(client, run.info.run_id)
    again = log_to_mlflow(tmp_path / "runs", sqlite_uri, "uploaded", report=lambda line: None)
    assert again.runs == 1 and again.values == 0
    assert len(history(client, run.info.run_id, "training/loss")) == 60


# --- a real tracking server ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    log = open(folder / f"server-{time.time_ns()}.log", "w")  # noqa: SIM115 - the server writes it while it runs
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"mlflow server ended ({process.returncode}): {(folder / log.name).read_text()}")
        time.sleep(0.5)
    _stop_server(process)
    raise AssertionError(f"mlflow server did not answer within {SERVER_START_SECONDS} s")


def _stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)  # the server and its uvicorn worker: their own session
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An MLflow tracking server on a free loopback port, SQLite backend store in a temporary folder: its URL."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    process = _start_server(folder, port)
    yield f"http://127.0.0.1:{port}"
    _stop_server(process)


@pytest.mark.slow
def test_an_experiment_logged_to_a_server_reads_back(tmp_path, server):
    config = tmp_path / "exp.yaml"
    config.write_text(TINY_SERIAL)
    run_mip("train", config, "--expdir", tmp_path / "runs", "--mlflow", server, "--test", "--no-progress",
            check=True)
    (folder,) = experiment_dirs(tmp_path / "runs")
    client = MlflowClient(server)
    run = client.get_run(recorded_run_id(folder))
    assert run.info.status == "FINISHED" and client.get_experiment(run.info.experiment_id).name == "miprometheus"
    assert run.data.params["training.optimizer.lr"] == "0.01" and run.data.params["training.seed"] == "7"
    assert [step for step, _ in history(client, run.info.run_id, "training/loss")] == list(range(1, 61))
    assert [step for step, _ in history(client, run.info.run_id, "validation/acc")] == [20, 40, 60]
    assert "test/acc" in run.data.metrics and run.data.tags["mip.model"] == "LSTM"
    assert {TRAINING_CONFIG, RUN_INFO} <= artifact_paths(client, run.info.run_id)
    # --mlflow is recorded in the experiment's config: a resume or a test logs to the same run
    assert server in (folder / TRAINING_CONFIG).read_text()


@pytest.mark.slow
def test_a_grid_is_a_parent_run_with_its_experiments_nested(tmp_path, server):
    (tmp_path / "exp.yaml").write_text(TINY_SERIAL.replace("seed: 7", "seed: -1"))
    (tmp_path / "grid.yaml").write_text("grid_tasks:\n  - {name: tiny, default_configs: exp.yaml}\n"
                                        "grid_settings: {experiment_repetitions: 2, max_concurrent_runs: 2}\n")
    run_mip("grid", "run", tmp_path / "grid.yaml", "--expdir", tmp_path / "runs", "--mlflow", server,
            "tracking.mlflow.experiment=grids", "--no-progress", check=True, timeout=600)
    (grid,) = list((tmp_path / "runs").glob("grid_*"))
    client = MlflowClient(server)
    parent = client.get_run(recorded_run_id(grid))
    assert parent.info.status == "FINISHED" and parent.data.tags["mip.kind"] == "grid"
    assert parent.data.metrics["grid/done"] == 2 and parent.data.params["grid_settings.experiment_repetitions"] == "2"
    assert {"grid_configuration.yaml", "manifest.json", "grid_summary.csv", "report.html"} <= artifact_paths(
        client, parent.info.run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.info.run_name for run in children) == ["000_tiny_r0", "001_tiny_r1"]
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["mip.grid"] == grid.name
        assert len(history(client, child.info.run_id, "training/loss")) == 60 and "test/acc" in child.data.metrics
    assert len({child.data.params["training.seed"] for child in children}) == 2  # each repetition its seed


@pytest.mark.slow
def test_a_tracker_killed_mid_run_then_restarted_receives_everything_and_the_run_completes(tmp_path):
    folder = tmp_path / "tracker"
    folder.mkdir()
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    process = _start_server(folder, port)
    try:
        config = tmp_path / "exp.yaml"
        config.write_text(tracked(uri, "outage", flush_timeout=600).replace("episode_limit: 60", "episode_limit: 400"))
        training = start_mip("train", config, "--expdir", tmp_path / "runs", "--no-progress", "--log-interval", "10")
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").rglob(MLFLOW_RUN)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the run exists at the tracker
        assert training.poll() is None, "the training ended before the tracker could be killed"
        _stop_server(process, signal.SIGKILL)
        process = _start_server(folder, port)  # same port, same database
        out, err = training.communicate(timeout=900)
        assert training.returncode == 0, err
        (experiment,) = experiment_dirs(tmp_path / "runs")
        assert f"MLflow at {uri} does not answer" in err and f"MLflow at {uri} answers again" in err
        client = MlflowClient(uri)
        run = client.get_run(recorded_run_id(experiment))
        assert run.info.status == "FINISHED"
        assert [step for step, _ in history(client, run.info.run_id, "training/loss")] == list(range(1, 401))
        # a validation at every epoch's end (20 episodes): the ones during the outage arrived too
        assert [step for step, _ in history(client, run.info.run_id, "validation/loss")] == list(range(20, 401, 20))
    finally:
        _stop_server(process)


@pytest.mark.slow
def test_a_searchs_trials_carry_their_phase_number_and_state(tmp_path, sqlite_uri):
    (tmp_path / "exp.yaml").write_text(TINY_SERIAL.replace("seed: 7", "seed: -1"))
    (tmp_path / "grid.yaml").write_text("""grid_tasks:
  - {name: lstm, default_configs: exp.yaml}
grid_settings:
  max_concurrent_runs: 2
  seed: 11
  search:
    space:
      training.optimizer.lr: {low: 1.0e-3, high: 3.0e-2, log: true}
    trials: 2
    objective: {statistic: loss, direction: minimize}
    reevaluate: {top: 1, seeds: 1}
""")
    run_mip("grid", "train", tmp_path / "grid.yaml", "--expdir", tmp_path / "runs", "--mlflow", sqlite_uri,
            "tracking.mlflow.experiment=search", "--no-progress", check=True, timeout=600)
    client = MlflowClient(sqlite_uri)
    (grid,) = list((tmp_path / "runs").glob("grid_*"))
    parent = recorded_run_id(grid)
    runs = {run.info.run_name: run for run in client.search_runs(
        [client.get_experiment_by_name("search").experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    assert sorted(runs) == ["000_lstm_t0", "001_lstm_t1", "002_lstm_best0_s0"]
    manifest = {record["id"]: record for record in json.loads((grid / "manifest.json").read_text())["experiments"]}
    for name in ("000_lstm_t0", "001_lstm_t1"):
        tags = runs[name].data.tags
        assert (tags["mip.phase"], tags["mip.trial"], tags["mip.search_state"]) == ("search", name[-1], "done")
        assert float(tags["mip.objective"]) == pytest.approx(manifest[name]["objective"])
        assert runs[name].data.params["training.optimizer.lr"] == str(manifest[name]["params"]["training.optimizer.lr"])
    best = runs["002_lstm_best0_s0"].data.tags
    chosen = min(("000_lstm_t0", "001_lstm_t1"), key=lambda name: manifest[name]["objective"])
    assert (best["mip.phase"], best["mip.trial"]) == ("reevaluation", chosen[-1])  # the trial it trains again

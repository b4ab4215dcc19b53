"""Warm start of local jobs: children forked from a server that imported torch once behave like fresh ones."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import yaml

from miprometheus.errors import EXIT_INTERRUPTED
from miprometheus.locks import pid_alive
from miprometheus.statistics import read_csv
from miprometheus.workers.grid.executors import make_executor
from miprometheus.workers.grid.executors.base import Job
from miprometheus.workers.grid.executors.fork_server import ServerGone
from miprometheus.workers.grid.executors.local import LocalExecutor
from miprometheus.workers.grid.spec import GridSettings
from tests.conftest import TINY_SERIAL, experiment_dirs, wait_job

LONG = TINY_SERIAL.replace("episode_limit: 60", "episode_limit: 100000").replace("interval: 20", "interval: null")


def _train(tmp_path: Path, name: str, config: str = TINY_SERIAL, extra: list[str] | None = None) -> Job:
    (tmp_path / f"{name}.yaml").write_text(config)
    return Job(name, ["train", f"{name}.yaml", "--expdir", f"exp/{name}", "--no-progress", *(extra or [])],
               tmp_path, f"logs/{name}.log")


def _wait_rows(tmp_path: Path, name: str, rows: int, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for csv in (tmp_path / "exp" / name).rglob("training_statistics.csv"):
            if csv.read_text().count("\n") > rows:
                return csv.parent
        time.sleep(0.05)
    raise AssertionError(f"{name} wrote no {rows} rows in {timeout} s")


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


def test_a_warm_job_writes_the_same_experiment_as_a_cold_one(tmp_path):
    results = {}
    for warm in (False, True):
        executor = LocalExecutor(warm_start=warm)
        try:
            name = "warm" if warm else "cold"
            handle = executor.submit(_train(tmp_path, name))
            assert (executor.server is not None) == warm
            assert wait_job(executor, handle, timeout=120).exit_code == 0
        finally:
            executor.close()
        [folder] = experiment_dirs(tmp_path / "exp" / name)
        config = yaml.safe_load((folder / "training_configuration.yaml").read_text())
        results[warm] = (config, _without_time(read_csv(folder / "training_statistics.csv")),
                         _without_time(read_csv(folder / "validation_statistics.csv")))
        assert "experiment folder:" in (tmp_path / "logs" / f"{name}.log").read_text()
    assert results[True] == results[False]
    assert len(results[True][1]) == 60


def test_a_killed_warm_job_is_reported_killed_and_resumes(tmp_path):
    executor = LocalExecutor()
    try:
        config = TINY_SERIAL.replace("episode_limit: 60}", "episode_limit: 400}\n  checkpoint_interval: 10")
        handle = executor.submit(_train(tmp_path, "killed", config))
        assert executor.server is not None
        folder = _wait_rows(tmp_path, "killed", 40)
        os.killpg(handle, signal.SIGKILL)  # the child leads its own process group, the server is not in it
        result = wait_job(executor, handle, timeout=30, interval=0.05)
        assert result.exit_code == -signal.SIGKILL and result.error.startswith("killed by signal SIGKILL")
        assert executor.server.process.poll() is None  # the server lives on
        resumed = Job("resumed", ["train", "--resume", str(folder), "--no-progress"], tmp_path, "logs/resumed.log")
        assert wait_job(executor, executor.submit(resumed), timeout=120).exit_code == 0
    finally:
        executor.close()
    info = json.loads((folder / "run_info.json").read_text())
    assert len(info["resumes"]) == 1 and info["resumes"][0]["from_episode"] >= 10
    assert [int(r["episode"]) for r in read_csv(folder / "training_statistics.csv")] == list(range(1, 401))


def test_a_cancelled_warm_job_checkpoints_and_exits_interrupted(tmp_path):
    executor = LocalExecutor()
    try:
        handle = executor.submit(_train(tmp_path, "cancelled", LONG))
        folder = _wait_rows(tmp_path, "cancelled", 5)
        executor.cancel(handle)  # SIGTERM: the Trainer's handler, installed in the forked child, checkpoints
        result = wait_job(executor, handle, timeout=10, interval=0.05)
    finally:
        executor.close()
    assert result.exit_code == EXIT_INTERRUPTED
    assert (folder / "models" / "model_last.pt").is_file() or list(folder.rglob("model_last.pt"))


def test_the_server_and_its_children_end_with_the_executor(tmp_path):
    executor = LocalExecutor()
    handles = [executor.submit(_train(tmp_path, f"long{i}", LONG)) for i in range(2)]
    server = executor.server
    assert server is not None
    # one thread at fork time: no torch thread pool was created in the server
    assert len(os.listdir(f"/proc/{server.process.pid}/task")) == 1
    _wait_rows(tmp_path, "long0", 2)
    executor.close()
    assert server.process.poll() is not None
    deadline = time.monotonic() + 10
    while any(pid_alive(h) for h in handles) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(h) for h in handles)


def test_warm_start_off_or_failing_starts_fresh_processes(tmp_path, monkeypatch, caplog):
    settings = GridSettings(warm_start=False)
    assert make_executor("local", settings).warm_start is False
    assert make_executor("local", GridSettings()).warm_start is True

    def cannot_start() -> None:
        raise ServerGone("no server today")

    monkeypatch.setattr("miprometheus.workers.grid.executors.local.ForkServer", cannot_start)
    for executor in (LocalExecutor(warm_start=False), LocalExecutor()):
        try:
            handle = executor.submit(_train(tmp_path, f"fresh{executor.warm_start}"))
            assert executor.server is None and executor.running[handle][0] is not None  # a subprocess
            assert wait_job(executor, handle, timeout=120).exit_code == 0
        finally:
            executor.close()
    assert "warm start off" in caplog.text and "no server today" in caplog.text


def test_a_warm_child_has_its_own_session_folder_and_log(tmp_path):
    executor = LocalExecutor()
    try:
        handle = executor.submit(_train(tmp_path, "own", LONG))
        _wait_rows(tmp_path, "own", 2)
        assert os.getsid(handle) == handle and os.getpgid(handle) == handle
        assert os.getsid(executor.server.process.pid) != handle
        assert Path(os.readlink(f"/proc/{handle}/cwd")) == tmp_path.resolve()
        assert Path(os.readlink(f"/proc/{handle}/fd/1")) == (tmp_path / "logs" / "own.log").resolve()
    finally:
        executor.close()

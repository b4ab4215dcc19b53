"""Hostile input and faults in a grid folder: a damaged folder is refused untouched, one grid process at a
time, and a grid killed and resumed never trains a finished experiment again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miprometheus.cli import main
from miprometheus.errors import ConfigError
from miprometheus.locks import FolderLock, lock_holder
from miprometheus.workers.grid.manifest import Manifest
from miprometheus.workers.grid.runner import create_grid, train_grid
from miprometheus.workers.grid.spec import load_grid
from tests.conftest import TINY_SERIAL, run_mip


def tiny_grid(tmp_path: Path, settings: str = "  experiment_repetitions: 2\n  max_concurrent_runs: 2\n",
              overwrite: str = "") -> Path:
    (tmp_path / "serial.yaml").write_text(TINY_SERIAL.replace("episode_limit: 60", "episode_limit: 20"))
    path = tmp_path / "grid.yaml"
    path.write_text("grid_tasks:\n  - default_configs: serial.yaml\n" + overwrite + "grid_settings:\n" + settings)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- a damaged grid folder: exit 2 naming the file, not one byte written -----------------------------------

DAMAGES = {
    "garbage configuration": ("grid_configuration.yaml", "grid_settings: [unclosed\n  : :\n"),
    "configuration not a mapping": ("grid_configuration.yaml", "- a\n- b\n"),
    "max_concurrent_runs 0": ("grid_configuration.yaml", None),
    "garbage manifest": ("manifest.json", "{not json"),
    "manifest not an object": ("manifest.json", "[1, 2]"),
    "manifest entry of the wrong type": ("manifest.json", None),
}


def damage(folder: Path, name: str) -> Path:
    file, text = DAMAGES[name]
    path = folder / file
    if name == "max_concurrent_runs 0":
        text = path.read_text().replace("max_concurrent_runs: 2", "max_concurrent_runs: 0")
    elif name == "manifest entry of the wrong type":
        data = json.loads(path.read_text())
        data["experiments"][1]["attempts"] = "x"
        text = json.dumps(data)
    assert text != path.read_text()
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list(DAMAGES))
@pytest.mark.parametrize("command", [["grid", "train", "--resume"], ["grid", "run", "--resume"], ["grid", "test"],
                                     ["grid", "analyze"]])
def test_a_damaged_grid_folder_is_refused_and_left_as_it_is(tmp_path, capsys, name, command):
    folder = create_grid(load_grid(tiny_grid(tmp_path)), tmp_path / "exp").folder
    damaged = damage(folder, name)
    before = snapshot(folder)
    code = main([*command, str(folder), *(["--no-progress"] if command[1] != "analyze" else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(damaged) in err and "Traceback" not in err
    assert snapshot(folder) == before  # nothing written, not even the grid's lock


def test_a_grid_file_given_with_resume_is_refused(tmp_path):
    grid_file = tiny_grid(tmp_path)
    folder = create_grid(load_grid(grid_file), tmp_path / "exp").folder
    before = snapshot(folder)
    with pytest.raises(ConfigError, match="its own configuration"):
        train_grid(grid_file, [], tmp_path / "exp", resume=folder, progress=False)
    assert snapshot(folder) == before


# --- one grid process per grid folder -------------------------------------------------------------------------


def test_a_second_grid_process_on_a_grid_folder_is_refused_naming_the_first(tmp_path, capsys):
    folder = create_grid(load_grid(tiny_grid(tmp_path)), tmp_path / "exp").folder
    manifest = (folder / "manifest.json").read_bytes()
    with FolderLock(folder, "grid train"):  # what a running `mip grid train` holds for its life
        code = main(["grid", "train", "--resume", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"pid {os.getpid()} on {socket.gethostname()} since" in err
    assert (folder / "manifest.json").read_bytes() == manifest  # the refused one ran and recorded nothing


# --- kill -9 of the grid process, then resume: each experiment trains once --------------------------------------


def _wait(predicate, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _run_infos(folder: Path) -> dict[str, dict]:
    found = {}
    for path in folder.glob("experiments/*/*/*/*/run_info.json"):
        try:
            found[path.relative_to(folder / "experiments").parts[0]] = json.loads(path.read_text())
        except ValueError:
            pass  # being written
    return found


def _statuses(folder: Path) -> dict[str, str]:
    try:
        return {r.id: r.status for r in Manifest.load(folder).records}
    except ConfigError:
        return {}


@pytest.mark.slow
def test_a_grid_killed_while_an_experiment_ends_never_trains_it_again(tmp_path, capsys):
    # two experiments: a short one that ends while the grid process is frozen, a long one it is killed during
    path = tiny_grid(tmp_path, settings="  max_concurrent_runs: 2\n  retries: 0\n"
                                        "  sweep: {training.terminal_conditions.episode_limit: [20, 1000]}\n",
                     overwrite="grid_overwrite: {training: {checkpoint_interval: 100}}\n")
    grid = subprocess.Popen([sys.executable, "-m", "miprometheus", "grid", "train", str(path), "--expdir",
                             str(tmp_path / "exp"), "--no-progress"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: list((tmp_path / "exp").glob("grid_*/manifest.json")))
        folder = next((tmp_path / "exp").glob("grid_*"))
        short, long = sorted(_statuses(folder))
        _wait(lambda: _statuses(folder) == {short: "running", long: "running"} and len(_run_infos(folder)) == 2)
        os.kill(grid.pid, signal.SIGSTOP)  # the grid process no longer reads its children's exits
        assert main(["grid", "train", "--resume", str(folder), "--no-progress"]) == 2  # a second grid process
        assert f"pid {grid.pid} on {socket.gethostname()}" in capsys.readouterr().err
        _wait(lambda: _run_infos(folder).get(short, {}).get("status") == "completed")
        assert _run_infos(folder)[long]["status"] == "running"
        os.kill(grid.pid, signal.SIGKILL)
    finally:
        if grid.poll() is None:
            grid.kill()
        grid.wait()
    assert _statuses(folder) == {short: "running", long: "running"}
    assert lock_holder(folder) is None  # the kernel released the grid's lock with the process
    result = run_mip("grid", "train", "--resume", folder, "--no-progress", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _statuses(folder) == {short: "done", long: "done"}
    for experiment in (short, long):
        logs = list(folder.glob(f"experiments/{experiment}/*/*/*/trainer.log"))
        assert len(logs) == 1  # one experiment folder each
        assert logs[0].read_text().count("training finished (limit)") == 1, experiment  # trained to its end once
    assert not _run_infos(folder)[short].get("resumes")  # the finished one was never started again
    assert len(_run_infos(folder)[long]["resumes"]) == 1  # the killed one went on from its checkpoint


class RecordingExecutor:
    """An executor that starts nothing and remembers what it was asked to start."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job):
        self.submitted.append(job.id)
        return len(self.submitted)

    def poll(self, handle):
        from miprometheus.workers.grid.executors import JobResult

        return JobResult(0)

    def cancel(self, handle) -> None:
        pass

    def close(self) -> None:
        pass


def test_an_experiment_still_trained_by_a_left_over_process_waits_for_it_then_is_taken_as_done(tmp_path):
    """A trainer left by a killed grid process (it holds its folder's lock) is not started a second time: the
    resumed grid waits for it, and once it has ended its training the experiment is done, run once."""
    import threading

    from miprometheus.workers.grid.runner import GridRunner

    folder = create_grid(load_grid(tiny_grid(tmp_path, settings="  max_concurrent_runs: 1\n")), tmp_path / "exp").folder
    record = Manifest.load(folder).records[0]
    Manifest.load(folder).update(record.id, status="running", attempts=1)  # as the killed grid left it
    experiment = folder / "experiments" / record.id / "SerialRecall" / "LSTM" / "20260101_000000"
    experiment.mkdir(parents=True)
    (experiment / "training_configuration.yaml").write_text("{}\n")
    (experiment / "run_info.json").write_text(json.dumps({"status": "running"}))
    left_over = FolderLock(experiment, "training").acquire()

    def finish() -> None:
        time.sleep(1.0)
        (experiment / "run_info.json").write_text(json.dumps({"status": "completed", "termination_cause": "limit"}))
        left_over.release()

    ender = threading.Thread(target=finish)
    ender.start()
    executor = RecordingExecutor()
    manifest = GridRunner(folder, executor=executor, progress=False).run()
    ender.join()
    assert executor.submitted == []  # never started again
    done = manifest.get(record.id)
    assert done.status == "done" and done.attempts == 1 and done.folder == str(experiment.relative_to(folder))


def test_a_search_trial_that_ended_while_the_grid_was_dead_is_told_to_its_study_not_run_again(tmp_path):
    """A trial adopted from its folder is told to its study with its objective, like one whose exit was read."""
    from miprometheus.workers.grid.runner import GridRunner, load_settings
    from miprometheus.workers.grid.search import Search
    from tests.workers.grid.test_search import GOOD_SEARCH, write_grid

    search = GOOD_SEARCH.replace("trials: 3", "trials: 1").replace("seeds: 2", "seeds: 0")
    grid = write_grid(tmp_path, search, tasks="  - {name: lstm, default_configs: tiny.yaml}")
    folder = create_grid(load_grid(grid), tmp_path / "exp").folder
    manifest = Manifest.load(folder)
    (trial_id,) = Search(folder, manifest, load_settings(folder).search, 1).fill(1)  # asked by the killed grid
    manifest.update(trial_id, status="running", attempts=1)
    experiment = folder / "experiments" / trial_id / "SerialRecall" / "LSTM" / "20260101_000000"
    experiment.mkdir(parents=True)
    (experiment / "training_configuration.yaml").write_text("{}\n")
    (experiment / "validation_statistics.csv").write_text("episode,loss\n20,0.5\n40,0.25\n")
    (experiment / "run_info.json").write_text(json.dumps({"status": "completed", "termination_cause": "limit"}))
    executor = RecordingExecutor()
    record = GridRunner(folder, executor=executor, progress=False).run().get(trial_id)
    assert executor.submitted == []
    assert record.status == "done" and record.search_state == "done" and record.objective == 0.25

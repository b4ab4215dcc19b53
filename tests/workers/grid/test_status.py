"""`mip grid status` and the live report.html: a grid watched while it runs, after it ended and after its grid
process was killed; read without taking the grid's lock or writing in its folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from miprometheus.cli import main
from miprometheus.locks import FolderLock, lock_state
from miprometheus.workers.grid.analysis import analyze
from miprometheus.workers.grid.executors import JobResult
from miprometheus.workers.grid.manifest import Manifest
from miprometheus.workers.grid.runner import GridRunner, create_grid, train_grid
from miprometheus.workers.grid.spec import load_grid
from miprometheus.workers.grid.status import (
    ExperimentStatus,
    State,
    StatusReader,
    estimate_time_left,
    first_epoch_episodes,
    last_row,
    progress_of,
)
from miprometheus.workers.grid.watch import show
from tests.workers.grid.test_grid_folder_faults import snapshot, tiny_grid

REFRESH = "http-equiv='refresh'"


@pytest.fixture(scope="module")
def trained_grid(tmp_path_factory) -> Path:
    """A real grid of three tiny experiments (20 episodes each), trained to its end."""
    root = tmp_path_factory.mktemp("status")
    grid_file = tiny_grid(root, settings="  experiment_repetitions: 3\n  max_concurrent_runs: 2\n  test: false\n")
    return train_grid(grid_file, [], root / "exp", progress=False).folder


@pytest.fixture
def grid(trained_grid: Path, tmp_path: Path) -> Path:
    """A copy of the trained grid, free to be changed."""
    return Path(shutil.copytree(trained_grid, tmp_path / trained_grid.name))


def status_text(capsys, folder: Path, *flags: str) -> str:
    code = main(["grid", "status", str(folder), *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def row_of(text: str, experiment: str) -> str:
    return next(line for line in text.splitlines() if experiment in line)


def notes(capsys, folder: Path) -> dict[str, dict]:
    """Each experiment's status as --json gives it (the table wraps long notes)."""
    return {e["id"]: e for e in json.loads(status_text(capsys, folder, "--json"))["experiments"]}


# --- a grid that ended -----------------------------------------------------------------------------------------


def test_a_finished_grid_shows_every_experiment_done_with_its_episodes_and_latest_validation(trained_grid, capsys):
    before = snapshot(trained_grid)
    out = status_text(capsys, trained_grid)
    for record in Manifest.load(trained_grid).records:
        row = row_of(out, record.id)
        info = json.loads((trained_grid / record.folder / "run_info.json").read_text())
        loss = info["last_validation_statistics"]["loss"]
        assert " done " in row and "20/20" in row and "100%" in row, row
        assert f"loss {loss:.4g}" in row and "@20" in row, row  # the validation_statistics.csv's last row
    assert "grid: ended, no grid process runs (the last: grid train: pid" in out
    assert "training: 3 done of 3 planned — 100% of the work" in out
    assert snapshot(trained_grid) == before  # read only: not a byte written, the lock file included


def test_the_json_status_holds_every_experiment_for_scripts(trained_grid, capsys):
    data = json.loads(status_text(capsys, trained_grid, "--json"))
    assert data["running"] is False and data["finished"] is True and data["progress"] == 1.0
    assert [e["state"] for e in data["experiments"]] == ["done"] * 3
    assert {e["episode"] for e in data["experiments"]} == {20} and data["planned"] == 3


def test_the_grid_process_left_a_final_report_that_does_not_reload(trained_grid):
    page = (trained_grid / "report.html").read_text()
    assert "<h2>Status</h2>" in page and REFRESH not in page


# --- states read from the manifest -------------------------------------------------------------------------------


def _hold_lock(folder: Path) -> subprocess.Popen:
    """A process holding the grid folder's lock as a grid process does, until killed."""
    code = ("import sys, time; from miprometheus.locks import FolderLock; "
            "FolderLock(sys.argv[1], 'grid train').acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_running_then_interrupted_when_the_grid_process_is_killed(grid, capsys):
    running, failed, queued = (r.id for r in Manifest.load(grid).records)
    manifest = Manifest.load(grid)
    manifest.update(running, status="running", ended=None, started=time.time() - 30)
    manifest.update(failed, status="failed", exit_code=1, last_error="RuntimeError: the loss is nan at episode 12")
    manifest.update(queued, status="pending", attempts=0, started=None, ended=None)
    holder = _hold_lock(grid)
    try:
        before = snapshot(grid)
        out = status_text(capsys, grid)
        assert f"grid: running (grid train: pid {holder.pid} on" in out  # the lock is held: the grid runs
        row = row_of(out, running)
        assert " running " in row and "20/20" in row and "@20" in row, row
        assert " failed " in row_of(out, failed) and " queued " in row_of(out, queued)
        assert notes(capsys, grid)[failed]["note"] == "RuntimeError: the loss is nan at episode 12"
        assert "time left: about " in out
        assert lock_state(grid).held  # the status never took the lock from its holder
        holder.send_signal(signal.SIGKILL)  # the grid process dies: kill -9
        holder.wait()
        out = status_text(capsys, grid)
        after = notes(capsys, grid)
        assert snapshot(grid) == before  # readings only, nothing written
    finally:
        holder.kill()
        holder.wait()
    assert f"grid: NOT RUNNING: no process holds the grid folder's lock, its grid process is gone (the last: grid " \
           f"train: pid {holder.pid} on" in out
    row = row_of(out, running)
    assert " interrupted " in row and " running " not in row, row
    assert after[running]["note"] == "its training had ended (completed): taken as done on resume"  # its run_info
    assert f"continue with: mip grid train --resume {grid}" in out
    assert "time left" not in out


def test_a_retried_experiment_and_a_failed_test_say_why(grid, capsys):
    first, second, _ = (r.id for r in Manifest.load(grid).records)
    manifest = Manifest.load(grid)
    manifest.update(first, status="pending", attempts=1, last_error="killed by signal SIGKILL")
    manifest.update(second, test_status="failed", test_exit_code=2, test_last_error="DataError: no such file")
    out = status_text(capsys, grid)
    assert " failed " in row_of(out, second)  # the test column
    found = notes(capsys, grid)
    assert found[first]["state"] == "queued" and found[first]["note"] == "retried after: killed by signal SIGKILL"
    assert found[second]["test"] == "failed" and found[second]["note"] == "test: DataError: no such file"


def test_a_search_shows_its_trials_pruned_ones_included(tmp_path, capsys):
    from miprometheus.workers.grid.runner import load_settings
    from miprometheus.workers.grid.search import Search
    from tests.workers.grid.test_search import GOOD_SEARCH, write_grid

    folder = create_grid(load_grid(write_grid(tmp_path, GOOD_SEARCH)), tmp_path / "exp").folder
    manifest = Manifest.load(folder)
    asked = Search(folder, manifest, load_settings(folder).search, 2).fill(2)
    pruned = next(i for i in asked if manifest.get(i).task == "lstm")
    manifest.update(pruned, status="done", attempts=1, search_state="pruned", objective=0.61)
    out = status_text(capsys, folder)
    row = row_of(out, pruned)
    assert " pruned " in row and f"#{manifest.get(pruned).trial}" in row and "objective 0.61" in row, row
    assert "search lstm: 1 of 3 trials (1 pruned)" in out
    assert "of 10 planned" in out  # 2 tasks x (3 trials + 2 re-evaluation seeds), asked as the grid goes


# --- reading files being written ---------------------------------------------------------------------------------


def test_a_row_being_appended_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "validation_statistics.csv"
    path.write_text("episode,epoch,loss\n10,0,0.5\n20,0,0.25\n30,1,0.1")  # the last row has no newline yet
    assert last_row(path) == {"episode": 20, "epoch": 0, "loss": 0.25}
    path.write_text("episode,epoch,loss\n")
    assert last_row(path) is None
    path.write_text("episode,epoch,loss\n10,0,0.5\n20,0\n")  # a row cut short by a kill
    assert last_row(path) == {"episode": 10, "epoch": 0, "loss": 0.5}
    path.write_text("episode,epoch,loss\n" + "".join(f"{i},0,0.{i}\n" for i in range(1, 200)))
    monkeypatch.setattr("miprometheus.workers.grid.status.TAIL_BYTES", 40)  # the tail begins inside a line
    assert last_row(path) == {"episode": 199, "epoch": 0, "loss": 0.199}
    assert last_row(tmp_path / "missing.csv") is None


def test_an_epoch_limited_run_s_progress_counts_its_episodes_once_an_epoch_has_ended(tmp_path):
    path = tmp_path / "training_statistics.csv"
    path.write_text("episode,epoch,loss\n" + "".join(f"{e},{(e - 1) // 125},0.1\n" for e in range(1, 300)))
    assert first_epoch_episodes(path) == 125
    assert progress_of(250, 1, None, 10, 125) == pytest.approx(0.2)
    assert progress_of(100, 0, None, 10, None) == 0.0  # no epoch ended yet: whole epochs only
    assert progress_of(250, 1, 1000, 10, 125) == pytest.approx(0.25)  # the nearer limit
    assert progress_of(250, 1, None, None, None) is None  # loss_stop alone: no limit to measure against


def _row(state: State, progress: float | None = None, training: float | None = None,
         wall: float | None = None) -> ExperimentStatus:
    return ExperimentStatus(f"{state}{progress}{wall}", state, 1, progress=progress, training_time_s=training,
                            wall_time_s=wall)


def test_time_left_lays_the_queue_out_on_the_concurrent_slots():
    finished = [_row(State.DONE, 1.0, 55, 60), _row(State.DONE, 1.0, 55, 60)]
    running = [_row(State.RUNNING, 0.5, 30, 32), _row(State.RUNNING, 0.5, 30, 32)]
    queued = [_row(State.QUEUED) for _ in range(3)]
    seconds, basis = estimate_time_left(finished + running + queued, 7, slots=2)
    # slots free at 30 s and 30 s; three queued of 60 s each: 30 + 60 = 90, 30 + 60 = 90, 90 + 60 = 150
    assert seconds == pytest.approx(150)
    assert "2 finished experiments (mean 1 min 00 s)" in basis and "2 at a time" in basis
    assert estimate_time_left(running + queued, 5, slots=2)[0] == pytest.approx(30 + 60 + 60)  # running ones' pace
    seconds, basis = estimate_time_left([_row(State.RUNNING, 0.001, 1, 1), *queued], 4, slots=2)
    assert seconds is None and "nothing has finished yet" in basis  # unknown: nothing to base it on
    assert estimate_time_left(finished, 2, slots=2)[0] == 0


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["empty folder", "missing", "a file", "damaged manifest"])
def test_a_folder_that_is_no_grid_exits_2_naming_it(tmp_path, capsys, trained_grid, what):
    folder = tmp_path / "folder"
    named = folder
    if what == "empty folder":
        folder.mkdir()
    elif what == "a file":
        folder.write_text("x")
    elif what == "damaged manifest":
        folder = Path(shutil.copytree(trained_grid, folder))
        (folder / "manifest.json").write_text("{not json")
        named = folder / "manifest.json"
    code = main(["grid", "status", str(folder)])
    out, err = capsys.readouterr()
    assert code == 2 and str(named) in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize("seconds", ["soon", "0", "nan", "1e9"])
def test_a_watch_time_that_is_no_refresh_time_exits_2(trained_grid, capsys, seconds):
    with pytest.raises(SystemExit) as exit_:
        main(["grid", "status", str(trained_grid), "--watch", seconds])
    assert exit_.value.code == 2 and "is not a refresh time" in capsys.readouterr().err


# --- watching, and the live report, while a grid runs -------------------------------------------------------------


class GatedExecutor:
    """Jobs that run (start nothing) until the gate opens, then end well."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[str] = []

    def submit(self, job):
        self.started.append(job.id)
        return len(self.started)

    def poll(self, handle):
        return JobResult(0) if self.gate.is_set() else None

    def cancel(self, handle) -> None:
        pass

    def close(self) -> None:
        pass


def _wait(predicate, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("final", [True, False])
def test_the_live_report_reloads_while_the_grid_runs_and_not_after(tmp_path, capsys, final):
    folder = create_grid(load_grid(tiny_grid(tmp_path)), tmp_path / "exp").folder
    executor = GatedExecutor()
    runner = GridRunner(folder, executor=executor, progress=False, final_report=final)
    grid = threading.Thread(target=runner.run)
    grid.start()
    try:
        _wait(lambda: len(executor.started) == 2 and "running" in (folder / "report.html").read_text())
        page = (folder / "report.html").read_text()
        assert REFRESH in page and "<h2>Status</h2>" in page and "grid: running (grid train: pid" in page
        out = status_text(capsys, folder)
        assert f"grid: running (grid train: pid {os.getpid()} on" in out  # this process runs the grid
        assert [e["state"] for e in notes(capsys, folder).values()] == ["running", "running"]
        threading.Timer(0.5, executor.gate.set).start()
        show(folder, watch=0.1)  # returns once the grid has ended
        assert "training: 2 done of 2 planned" in capsys.readouterr().out
    finally:
        executor.gate.set()
        grid.join()
    page = (folder / "report.html").read_text()
    assert (REFRESH in page) is not final  # `mip grid run` lets the analysis write the final page
    analyze(folder, console=False)
    assert REFRESH not in (folder / "report.html").read_text()


def test_ctrl_c_ends_a_watch_with_exit_0(grid, capsys, monkeypatch):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("miprometheus.workers.grid.watch.time.sleep", interrupt)
    with FolderLock(grid, "grid train"):  # the grid runs: the watch would go on
        assert main(["grid", "status", str(grid), "--watch", "0.1"]) == 0


def test_a_watch_of_a_running_grid_prints_json_lines_until_it_ends(grid, capsys, monkeypatch):
    lock = FolderLock(grid, "grid train").acquire()
    monkeypatch.setattr("miprometheus.workers.grid.watch.time.sleep", lambda seconds: lock.release())
    assert main(["grid", "status", str(grid), "--watch", "0.1", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["running"] for line in lines] == [True, False]


def test_the_reader_keeps_the_last_manifest_when_one_cannot_be_read(grid):
    reader = StatusReader(grid)
    (grid / "manifest.json").write_text("{")  # cannot happen with atomic writes, but a reader must not stop
    assert [row.state for row in reader.read().experiments] == [State.DONE] * 3


def test_the_live_report_draws_the_tables_and_curves_in_a_thread_and_writes_no_csv(grid, monkeypatch):
    import logging

    from miprometheus.workers.grid.analysis import live_report

    monkeypatch.setattr(live_report, "ANALYSIS_SECONDS", 0)  # due at once (60 s in a grid process)
    report = live_report.LiveReport(grid, logging.getLogger("test"))
    report.start()
    report.tick()
    report._thread.join()
    page = (grid / "report.html").read_text()
    assert REFRESH in page and "<h2>Status</h2>" in page
    assert "<h2>Learning curves</h2>" in page and "plots/SerialRecall.png" in page and (grid / "plots").is_dir()
    report.close()
    page = (grid / "report.html").read_text()
    assert REFRESH not in page and "plots/SerialRecall.png" in page
    assert not list(grid.glob("*.csv"))  # the tables' CSVs are mip grid analyze's

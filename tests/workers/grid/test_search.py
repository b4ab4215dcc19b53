"""The grid's search: spaces and their checks, trials as grid experiments, pruning, re-evaluation, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from miprometheus.layout import RUN_INFO, SEARCH_JOURNAL, STOP_REQUEST, VALIDATION_CSV
from miprometheus.workers.grid.manifest import DONE, FAILED, PRUNED, REEVALUATION, SEARCH, Manifest
from miprometheus.workers.grid.search import Search, make_sampler, open_journal, search_info, task_config_file
from miprometheus.workers.grid.search_settings import Dimension, SearchSettings, parse_dimension
from tests.conftest import TINY_SERIAL, run_mip, start_mip

# ----------------------------------------------------------------------------------------------- spaces


@pytest.mark.parametrize(("entry", "kind", "values"), [
    ({"low": 1e-4, "high": 1e-2, "log": True}, "float", (1e-4, 1e-2, True)),
    ({"low": 1, "high": 3}, "int", (1, 3, False)),
    ({"low": 1, "high": 3.0}, "float", (1, 3.0, False)),  # integers only when both bounds are integers
    ({"choices": [64, 128, "x"]}, "categorical", None),
])
def test_a_space_entry_is_a_range_or_choices(entry, kind, values):
    dimension, errors = parse_dimension("k", entry, "g.yaml:3: ")
    assert errors == [] and dimension is not None and dimension.kind == kind
    if values:
        assert (dimension.low, dimension.high, dimension.log) == values
        distribution = dimension.distribution()
        assert (distribution.low, distribution.high, distribution.log) == values
    else:
        assert list(dimension.distribution().choices) == [64, 128, "x"]


@pytest.mark.parametrize(("entry", "says"), [
    ({"low": 0.1, "high": 0.01}, "not a range"),
    ({"low": 1, "high": 1}, "not a range"),
    ({"low": 0, "high": 1, "log": True}, "log needs positive bounds"),
    ({"low": "a", "high": 1}, "must be numbers"),
    ({"low": 1}, "needs both low and high"),
    ({"choices": []}, "non-empty list"),
    ({"choices": [1, 1]}, "repeat"),
    ({"choices": [[1, 2]]}, "a choice must be"),
    ({"choices": [1], "low": 0}, "cannot be combined"),
    ({"lo": 1, "high": 2}, "unknown entry lo"),
    ([1, 2], "must be a mapping"),
])
def test_a_bad_space_entry_names_where_and_why(entry, says):
    dimension, errors = parse_dimension("k", entry, "g.yaml:3: ")
    assert dimension is None and len(errors) == 1
    assert errors[0].startswith("g.yaml:3: ") and says in errors[0], errors


def test_the_grid_sampler_walks_choices_integer_ranges_and_steps():
    assert Dimension("a", "categorical", choices=(1, 2)).grid_values() == [1, 2]
    assert Dimension("a", "int", 1, 3).grid_values() == [1, 2, 3]
    assert Dimension("a", "float", 0.0, 1.0, step=0.5).grid_values() == [0.0, 0.5, 1.0]
    assert Dimension("a", "float", 0.0, 1.0).grid_values() is None


# ------------------------------------------------------------------------------------------- bad input


def write_grid(folder: Path, search: str, tasks: str = "", extra: str = "") -> Path:
    (folder / "tiny.yaml").write_text(TINY_SERIAL.replace("seed: 7", "seed: -1"))
    (folder / "grid.yaml").write_text(f"""grid_tasks:
{tasks or '''  - {name: lstm, default_configs: tiny.yaml}
  - {name: gru, default_configs: tiny.yaml, overwrite: {model.name: GRU}}'''}
grid_settings:
  max_concurrent_runs: 2
  seed: 11
{extra}  search:
{search}""")
    return folder / "grid.yaml"


def mip_in_process(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """``mip ARGS`` in this process (no start-up per case): its exit code and what it wrote to stderr."""
    from miprometheus.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


GOOD_SEARCH = """    space:
      training.optimizer.lr: {low: 1.0e-3, high: 3.0e-2, log: true}
      model.hidden_size: {choices: [8, 16]}
    trials: 3
    objective: {statistic: loss, direction: minimize}
    reevaluate: {top: 1, seeds: 2}
"""


@pytest.mark.parametrize(("change", "line", "says"), [
    (("model.hidden_size", "model.hiden_size"), 10, "unknown key 'model.hiden_size'. Did you mean 'model.hidden_size'"),
    (("low: 1.0e-3", "low: 0.0"), 9, "log needs positive bounds"),
    (("low: 1.0e-3, high: 3.0e-2", "low: 0.1, high: 0.01"), 9, "not a range"),
    (("statistic: loss", "statistic: accuracy"), 12, "objective statistic 'accuracy' is not produced by the "
                                                      "validation problem SerialRecall (it produces loss, acc"),
    (("top: 1", "top: 4"), 13, "reevaluate.top (4) cannot exceed the trials of a task (3)"),
    (("choices: [8, 16]", "choices: [8, big]"), 10, "= 'big' makes the task's config invalid"),
    (None, 9, "sampler 'grid' needs"),  # the grid sampler cannot walk a continuous range
])
def test_a_bad_search_exits_2_naming_the_grid_file_line_before_anything_runs(tmp_path, capsys, change, line, says):
    grid = write_grid(tmp_path, GOOD_SEARCH.replace(*change) if change else GOOD_SEARCH + "    sampler: grid\n")
    code, err = mip_in_process(capsys, "grid", "train", grid, "--expdir", tmp_path / "out", "--no-progress")
    assert code == 2, err
    assert f"{grid}:{line}: " in err and says in err, err
    assert not (tmp_path / "out").exists()


def test_the_cmaes_sampler_without_its_package_is_bad_input(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    grid = write_grid(tmp_path, GOOD_SEARCH + "    sampler: cmaes\n")
    code, err = mip_in_process(capsys, "grid", "train", grid, "--expdir", tmp_path / "out")
    assert code == 2 and f"{grid}:14: " in err and "pip install cmaes" in err, err


def test_a_search_grid_has_no_sweep_nor_repetitions(tmp_path, capsys):
    grid = write_grid(tmp_path, GOOD_SEARCH, extra="  experiment_repetitions: 3\n  sweep: {model.hidden_size: [8]}\n")
    code, err = mip_in_process(capsys, "grid", "train", grid, "--expdir", tmp_path / "out")
    assert code == 2
    assert "has no sweep" in err and "runs each trial once" in err


# ------------------------------------------------------------------------------------------ a whole search


def manifest_of(out: Path) -> Manifest:
    (folder,) = list(out.glob("grid_*"))
    return Manifest.load(folder)


def test_a_search_runs_equal_budgets_then_re_evaluates_the_best_on_fresh_seeds_and_tests_them(tmp_path):
    grid = write_grid(tmp_path, GOOD_SEARCH, extra="  tensorboard: 0\n")
    result = run_mip("grid", "run", grid, "--expdir", tmp_path / "out", "--no-progress", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = manifest_of(tmp_path / "out")
    folder = manifest.folder
    trials = [r for r in manifest.records if r.phase == SEARCH]
    again = [r for r in manifest.records if r.phase == REEVALUATION]
    # every task gets the same budget, and its trials are numbered 0..trials-1 in its own study
    assert sorted((r.task, r.trial) for r in trials) == [(t, n) for t in ("gru", "lstm") for n in range(3)]
    assert all(r.search_state in (DONE, PRUNED) and r.status == DONE for r in trials)
    for record in trials:  # the sampled values are the config's, inside the space
        config = yaml.safe_load((folder / record.config).read_text())
        assert config["training"]["optimizer"]["lr"] == record.params["training.optimizer.lr"]
        assert config["model"]["hidden_size"] == record.params["model.hidden_size"] in (8, 16)
        assert 1e-3 <= record.params["training.optimizer.lr"] <= 3e-2
        assert config["training"]["seed"] == record.seed
    # the studies in the journal agree with the manifest
    storage = open_journal(folder)
    import optuna

    for task in ("lstm", "gru"):
        study = optuna.load_study(study_name=task, storage=storage)
        told = {t.number: (t.state.name, t.value) for t in study.trials}
        for record in (r for r in trials if r.task == task):
            state, value = told[record.trial]
            assert state == {"done": "COMPLETE", "pruned": "PRUNED"}[record.search_state]
            if state == "COMPLETE":
                assert value == pytest.approx(record.objective)
        best = min((r for r in trials if r.task == task and r.search_state == DONE), key=lambda r: r.objective)
        runs = [r for r in again if r.task == task]
        # the best trial, re-trained on 2 seeds never used in the search, then tested
        assert len(runs) == 2 and {r.trial for r in runs} == {best.trial}
        assert all(r.params == best.params for r in runs)
        assert all(r.test_status == DONE for r in runs)
    assert not {r.seed for r in again} & {r.seed for r in trials}
    assert len({r.seed for r in again}) == len(again)
    assert all(r.test_status != DONE for r in trials)  # trials are chosen on validation, never tested
    # the summary, the console's search lines, TensorBoard's HParams in each trial's own event file
    assert "search lstm: 3 trials" in result.stdout and "re-evaluated in 2 runs" in result.stdout
    assert (folder / "search_summary.csv").is_file()
    events = list((folder / trials[0].folder / "tensorboard").glob("events.out.tfevents.*"))
    assert events and b"hparams" in events[0].read_bytes()


# ---------------------------------------------------------------------------------- the grid process's part


def search_folder(tmp_path: Path, trials: int = 4, pruner: str = "median") -> tuple[Search, Manifest]:
    """A grid folder with one search task and no experiment run: the Search object the runner would make."""
    (tmp_path / "configs").mkdir()
    task_config = yaml.safe_load(TINY_SERIAL)
    (tmp_path / task_config_file("lstm")).write_text(yaml.safe_dump(task_config))
    settings = SearchSettings(space={"training.optimizer.lr": {"low": 1e-3, "high": 1e-1, "log": True}},
                              trials=trials, sampler="random", pruner=pruner)
    dimensions = {"training.optimizer.lr": Dimension("training.optimizer.lr", "float", 1e-3, 1e-1, True)}

    class Task:
        name, config, seed = "lstm", task_config, None

    Task.dimensions = dimensions
    manifest = Manifest(tmp_path, [], {"search": search_info([Task], 3)})
    manifest.save()
    return Search(tmp_path, manifest, settings, max_concurrent=1), manifest


def fake_trial_folder(grid: Path, experiment_id: str, losses: list[float], cause: str | None = None) -> Path:
    folder = grid / "experiments" / experiment_id / "SerialRecall" / "LSTM" / "20260101_000000"
    folder.mkdir(parents=True)
    (folder / "training_configuration.yaml").write_text("{}\n")
    rows = "".join(f"{100 * (i + 1)},{loss}\n" for i, loss in enumerate(losses))
    (folder / VALIDATION_CSV).write_text("episode,loss\n" + rows)
    if cause:
        (folder / RUN_INFO).write_text(json.dumps({"termination_cause": cause}))
    return folder


def test_trials_report_each_validation_and_a_bad_one_is_asked_to_stop(tmp_path):
    search, manifest = search_folder(tmp_path)
    for _ in range(2):  # two good trials finish: the median pruner has peers to compare with
        (record_id,) = search.fill(1)
        folder = fake_trial_folder(tmp_path, record_id, [0.5, 0.3, 0.2], cause="limit")
        manifest.update(record_id, status=DONE, folder=str(folder.relative_to(tmp_path)))
        search.conclude(manifest.get(record_id), ok=True)
        assert manifest.get(record_id).search_state == DONE and manifest.get(record_id).objective == 0.2
    (bad,) = search.fill(1)
    folder = fake_trial_folder(tmp_path, bad, [0.9])
    search.watch([bad])
    trial = [t for t in search.studies["lstm"].trials if t.number == 2][0]
    assert trial.intermediate_values == {100: 0.9}  # reported at its episode, not its validation count
    request = json.loads((folder / STOP_REQUEST).read_text())
    assert request["cause"] == "pruned" and "episode 100" in request["reason"]
    search.watch([bad])  # read again: nothing reported twice
    # the trainer honoured it: the run ended with the pruned cause; the study is told PRUNED, not FAIL
    (folder / RUN_INFO).write_text(json.dumps({"termination_cause": "pruned"}))
    manifest.update(bad, status=DONE, folder=str(folder.relative_to(tmp_path)))
    search.conclude(manifest.get(bad), ok=True)
    assert manifest.get(bad).search_state == PRUNED
    assert [t.state.name for t in search.studies["lstm"].trials] == ["COMPLETE", "COMPLETE", "PRUNED"]


def test_a_trial_asked_but_never_recorded_is_adopted_not_drawn_again(tmp_path):
    search, manifest = search_folder(tmp_path, trials=2)
    study = search.studies["lstm"]
    orphan = study.ask({"training.optimizer.lr": search.dimensions["lstm"]["training.optimizer.lr"].distribution()})
    # the grid process died between ask and the manifest write; a new one reads the same folder
    again = Search(tmp_path, Manifest.load(tmp_path), search.settings, max_concurrent=1)
    (record,) = again.manifest.records
    assert record.trial == orphan.number and record.params == orphan.params
    assert len(again.fill(5)) == 1  # the budget counts the adopted trial
    assert len(again.studies["lstm"].trials) == 2


def test_a_task_whose_first_trials_all_fail_stops_and_names_the_first_error(tmp_path):
    search, manifest = search_folder(tmp_path, trials=5)
    for error in ("boom: first", "boom: second", "boom: third"):
        (record_id,) = search.fill(1)
        manifest.update(record_id, status=FAILED, last_error=error)
        search.conclude(manifest.get(record_id), ok=False)
    assert search.fill(5) == [] and search.finished()
    assert "boom: first" in manifest.info["search"]["gave_up"]["lstm"]
    assert [t.state.name for t in search.studies["lstm"].trials] == ["FAIL"] * 3


def test_the_sampler_is_seeded_by_grid_task_and_trial_so_a_resumed_search_proposes_the_same(tmp_path):
    dimensions = {"x": Dimension("x", "float", 0.0, 1.0)}
    import optuna

    def proposals() -> list[float]:
        study = optuna.create_study()
        found = []
        for n in range(4):
            study.sampler = make_sampler("tpe", 1000 + n, dimensions, trials=4)
            trial = study.ask({"x": dimensions["x"].distribution()})
            study.tell(trial, trial.params["x"] ** 2)
            found.append(trial.params["x"])
        return found

    assert proposals() == proposals()


# ---------------------------------------------------------------------------------------- kill and resume


@pytest.mark.slow
def test_a_search_killed_half_way_resumes_without_losing_or_repeating_a_trial(tmp_path):
    """SIGKILL to the whole process group mid-search, then ``--resume``: the budget is met exactly, every trial
    number appears once, the re-evaluation runs once, and the proposals are those of an uninterrupted search
    (one trial at a time: the order of finished trials is then the same)."""
    search = GOOD_SEARCH.replace("seeds: 2", "seeds: 1")
    runs = {}
    for name in ("whole", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        grid = write_grid(folder, search)
        grid.write_text(grid.read_text().replace("max_concurrent_runs: 2", "max_concurrent_runs: 1"))
        if name == "killed":
            process = subprocess.Popen([sys.executable, "-m", "miprometheus", "grid", "train", str(grid), "--expdir",
                                        str(folder / "out"), "--no-progress"], start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # kill once 3 of the 6 trials were asked (2 ended, 1 running)
                found = list((folder / "out").glob("grid_*/manifest.json"))
                if found and sum(r.get("phase") == SEARCH for r in json.loads(found[0].read_text() or "{}")
                                 .get("experiments", [])) >= 3:
                    break
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            (grid_folder,) = list((folder / "out").glob("grid_*"))
            result = run_mip("grid", "train", "--resume", grid_folder, "--no-progress", timeout=900)
        else:
            result = run_mip("grid", "train", grid, "--expdir", folder / "out", "--no-progress", timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        runs[name] = manifest_of(folder / "out")
    killed = runs["killed"]
    trials = [r for r in killed.records if r.phase == SEARCH]
    assert sorted((r.task, r.trial) for r in trials) == [(t, n) for t in ("gru", "lstm") for n in range(3)]
    assert len({r.id for r in trials}) == 6
    assert sum(r.phase == REEVALUATION for r in killed.records) == 2  # 2 tasks x top 1 x 1 seed, made once
    import optuna

    for task in ("lstm", "gru"):
        study = optuna.load_study(study_name=task, storage=open_journal(killed.folder))
        assert len(study.trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    # the same proposals as the uninterrupted search
    params = {m: {(r.task, r.trial): r.params for r in runs[m].records if r.phase == SEARCH} for m in runs}
    assert params["killed"] == params["whole"]
    assert (killed.folder / SEARCH_JOURNAL).is_file()


@pytest.mark.slow
def test_ctrl_c_stops_a_search_and_resume_finishes_it(tmp_path):
    grid = write_grid(tmp_path, GOOD_SEARCH.replace("seeds: 2", "seeds: 1"))
    process = start_mip("grid", "train", grid, "--expdir", tmp_path / "out", "--no-progress")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((tmp_path / "out").glob("grid_*/experiments/*")):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "--resume" in err
    (folder,) = list((tmp_path / "out").glob("grid_*"))
    result = run_mip("grid", "train", "--resume", folder, "--no-progress", timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = Manifest.load(folder)
    assert sum(r.phase == SEARCH for r in manifest.records) == 6
    assert sum(r.phase == REEVALUATION for r in manifest.records) == 2

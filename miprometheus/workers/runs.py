"""What the ``mip`` commands do: train, resume, test and check an experiment."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miprometheus.config import load_config
from miprometheus.config.experiment_spec import ExperimentSpec, validate
from miprometheus.errors import BadInputError, ConfigError, Interrupted, RunFailed
from miprometheus.layout import (
    ASSETS,
    BEST,
    MODELS_DIR,
    RUN_INFO,
    TESTER_LOG,
    TESTING_CONFIG,
    TRAINING_CONFIG,
    TRAINING_CSV,
    VALIDATION_CSV,
)
from miprometheus.workers.run_folder import ExperimentFolder, RunOptions, now, read_run_info
from miprometheus.workers.stop_cause import StopCause

if TYPE_CHECKING:
    from miprometheus.workers.trainer import Trainer


@dataclass
class TrainResult:
    folder: Path
    cause: StopCause
    episodes: int
    validation: dict[str, float] | None
    test: dict[str, float] | None = None
    test_folder: Path | None = None


def check_device(device: str, threads: int | None = None) -> str:
    import torch

    from miprometheus.params import MAX_THREADS

    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:  # 100,000 threads end in a segmentation fault inside torch
            raise BadInputError(f"--threads must be between 1 and {MAX_THREADS}, not {threads}")
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}: no CUDA device is available on this machine")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise BadInputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device != "cpu":
        raise BadInputError(f"--device must be cpu, cuda or cuda:N, not {device!r}")
    return device


def check_visualize(setting: int | str | None) -> None:
    """``--visualize`` is off (None), a positive number of samples, or "window" where a display exists."""
    if setting is None:
        return
    if setting == "window":
        from miprometheus.visualization import require_display

        require_display()
    elif isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise BadInputError(f"--visualize takes a positive number of samples or 'window', not {setting!r}")


def _log_transfer(trainer: Trainer) -> None:
    init, frozen = trainer.transfer.get("init_from"), trainer.transfer.get("frozen")
    if init is not None:
        trainer.logger.info("weights: %d tensors from %s%s", init["loaded"], init["checkpoint_file"],
                            f" ({len(init['skipped'])} not loaded)" if init["skipped"] else "")
    if frozen is not None:
        trainer.logger.info("frozen: %s (%s parameters, kept in eval mode)", ", ".join(frozen["modules"]),
                            f"{frozen['parameter_count']:,}")
    if trainer.precision != "32":
        from miprometheus.workers.precision import precision_note

        trainer.logger.info("precision: %s", precision_note(trainer.device, trainer.precision))


def _resumed_trainer(folder: Path, overrides: list[str], options: RunOptions,
                     device: str) -> tuple[Trainer, ExperimentFolder]:
    """A trainer at the last checkpoint of the experiment in ``folder``, and that folder, its resume recorded.

    Everything the resume reads (config, run record, statistics, assets, checkpoint) is checked before the
    folder's lock is taken and anything is written: a damaged folder is bad input and stays as it was."""
    from miprometheus.files import remove_temp_files
    from miprometheus.problems.assets import read_assets_file
    from miprometheus.statistics import check_statistics_csv
    from miprometheus.workers.callbacks import default_callbacks
    from miprometheus.workers.trainer import LAST_CHECKPOINT, Trainer

    if not (folder / TRAINING_CONFIG).is_file():
        raise ConfigError(f"--resume {folder}: not an experiment folder (no {TRAINING_CONFIG})")
    run_info = read_run_info(folder)
    for name in (TRAINING_CSV, VALIDATION_CSV):
        check_statistics_csv(folder / name)
    spec = validate(load_config([folder / TRAINING_CONFIG], overrides))
    trainer = Trainer(spec, spec.training.seed, device, default_callbacks(spec, options),
                      log_interval=options.log_interval, resuming=True, assets=read_assets_file(folder / ASSETS))
    trainer.resume(folder / LAST_CHECKPOINT)
    experiment = ExperimentFolder(folder, options)
    try:
        experiment.hold_lock("training")
        for removed in remove_temp_files(folder, folder / MODELS_DIR):  # left by kills in a write; nobody writes now
            experiment.logger.info("removed %s (a temporary file left by a killed run)", removed)
        if overrides:  # the saved config must stay the one that reproduces this experiment
            experiment.save_config(spec.effective_tree(trainer.model.params))
        experiment.run_info = run_info
        experiment.write_run_info(status="running", end_time=None, termination_cause=None, resumes=[
            *experiment.run_info.get("resumes", []),
            {"time": now(), "from_episode": trainer.state.episode, "command_line": options.command_line}])
    except BaseException:
        experiment.close()  # releases the lock
        raise
    return trainer, experiment


def _new_trainer(config_paths: list[str], overrides: list[str], options: RunOptions,
                 device: str) -> tuple[Trainer, ExperimentFolder]:
    """A trainer for a new experiment, and its folder, made once every component was built (bad input
    leaves no folder behind). The new folder gets at once what a resume needs — the effective config,
    run_info.json, assets and a checkpoint of episode 0 — and is removed on the way out when that fails or
    SIGINT/SIGTERM arrives before it is complete: a folder left behind is one that ``--resume`` continues."""
    from miprometheus.files import WriteFailed
    from miprometheus.seeding import draw_seed
    from miprometheus.workers.callbacks import default_callbacks
    from miprometheus.workers.trainer import Trainer

    spec = validate(load_config(config_paths, overrides))
    seed = spec.training.seed if spec.training.seed != -1 else draw_seed()
    trainer = Trainer(spec, seed, device, default_callbacks(spec, options), log_interval=options.log_interval)
    experiment = ExperimentFolder.create(spec, options)
    try:
        with _sigterm_raises():
            experiment.hold_lock("training")
            tree = spec.effective_tree(trainer.model.params)
            tree["training"]["seed"] = seed
            experiment.save_config(tree)
            experiment.start_run_info(seed, device)
            # where the weights came from and what was frozen (a resume keeps the first run's record)
            experiment.write_run_info(precision=trainer.precision, init_from=trainer.transfer.get("init_from"),
                                      frozen=trainer.transfer.get("frozen"))
            trainer.attach(experiment)
            trainer.save_start_checkpoint()
            experiment.complete()
    except WriteFailed as failed:
        experiment.discard()
        raise WriteFailed(f"{failed} (the new experiment folder was removed: nothing of it was kept)") from None
    except BaseException:
        experiment.discard()
        raise
    return trainer, experiment


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as SIGINT does) while a new folder is made, so that it is removed on
    the way out; the Trainer catches both signals once training starts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit(trainer: Trainer, experiment: ExperimentFolder) -> StopCause:
    """Train in ``experiment``'s folder; run_info.json records the end, whatever it is."""
    trainer.attach(experiment)
    experiment.logger.info("experiment folder: %s", experiment.folder)
    if not trainer.resumed:  # the model's table follows, measured on the first step (ModelSummaryCallback)
        _log_transfer(trainer)
    try:
        cause = trainer.fit()
    except BaseException as exc:
        with contextlib.suppress(Exception):  # a full disk must not hide the error that ended the run
            experiment.write_run_info(status="failed", end_time=now(), termination_cause=str(StopCause.ERROR),
                                      error=f"{type(exc).__name__}: {exc}"[:2000], episodes=trainer.state.episode)
        _run_recorded(trainer)
        experiment.close()
        raise
    record: dict[str, Any] = {}
    for callback in trainer.callbacks:
        record.update(callback.run_info())
    experiment.write_run_info(
        status=cause.status, end_time=now(), termination_cause=str(cause), termination_reason=trainer.stop_reason,
        episodes=trainer.state.episode, epochs=trainer.state.epoch, **record,
        last_training_statistics=trainer.last_training_stats, last_validation_statistics=trainer.last_validation_stats)
    experiment.logger.info("training finished (%s): %s", cause, trainer.stop_reason)
    _run_recorded(trainer)
    experiment.close()
    return cause


def _run_recorded(trainer: Trainer) -> None:
    """Tell every callback that run_info.json holds the run's end (each one's failure stops none of the others)."""
    for callback in trainer.callbacks:
        with contextlib.suppress(Exception):
            callback.on_run_recorded(trainer)


def _raise_unless_completed(trainer: Trainer, experiment: ExperimentFolder) -> None:
    """A run that did not complete is an error of the command (exit 1), or an interruption that says how to go on."""
    from miprometheus.workers.commands import resume_command, shell_line

    if trainer.stop_cause is StopCause.NAN:
        raise RunFailed(f"training stopped: {trainer.stop_reason}. {experiment.folder} keeps the best checkpoint "
                        f"and the statistics written so far ({RUN_INFO}: termination_cause 'nan').")
    if trainer.stop_cause is StopCause.INTERRUPTED:
        raise Interrupted(f"training interrupted ({trainer.stop_reason}) at episode {trainer.state.episode}; "
                          f"the last checkpoint is saved. Continue with: "
                          f"{shell_line(resume_command(experiment.folder))}")


def train(config_paths: list[str], overrides: list[str], options: RunOptions, resume: Path | None = None,
          test_after: bool = False) -> TrainResult:
    """Train (or resume) one experiment; raise RunFailed/Interrupted when it did not complete."""
    device = check_device(options.device, options.threads)
    check_visualize(options.visualize)
    if resume is not None:
        trainer, experiment = _resumed_trainer(Path(resume), overrides, options, device)
    else:
        trainer, experiment = _new_trainer(config_paths, overrides, options, device)
    try:
        cause = _fit(trainer, experiment)
    finally:
        experiment.close()  # releases the folder's lock (closing twice is harmless)
    _raise_unless_completed(trainer, experiment)
    best = experiment.run_info.get("best_validation_statistics")
    result = TrainResult(experiment.folder, cause, trainer.state.episode, best)
    if test_after and "testing" in trainer.spec.splits:
        result.test_folder, result.test = test(experiment.folder, [], options)
    return result


def _testing_seed(folder: Path | None, spec: ExperimentSpec) -> int:
    if folder is not None:
        seed = read_run_info(folder).get("seed")
        if isinstance(seed, int):
            return seed
    if spec.training is not None and spec.training.seed != -1:
        return spec.training.seed
    return 0


@dataclass
class _TestTarget:
    """What ``mip test`` was pointed at: the configs to read, the weights, and the experiment folder they
    belong to (None for a checkpoint outside one)."""

    config_files: list[Path | str]
    checkpoint: Path
    experiment_folder: Path | None


def _test_target(target: Path, checkpoint: Path | None, extra_configs: list[str] | None) -> _TestTarget:
    if target.is_dir():
        config_files: list[Path | str] = [target / TRAINING_CONFIG, *(extra_configs or [])]
        if not (target / TRAINING_CONFIG).is_file():
            raise ConfigError(f"{target} is not an experiment folder (no {TRAINING_CONFIG})")
        return _TestTarget(config_files, Path(checkpoint) if checkpoint else target / MODELS_DIR / BEST, target)
    if checkpoint is None:
        raise BadInputError("testing a config file needs the weights: mip test CONFIG --model CHECKPOINT")
    checkpoint = Path(checkpoint)
    folder = checkpoint.parent.parent if checkpoint.parent.name == MODELS_DIR else None
    return _TestTarget([target, *(extra_configs or [])], checkpoint, folder)


def _chosen_settings(spec: ExperimentSpec, settings: list[str] | None) -> list[str | None]:
    """The named test settings to run (all of them by default), or [None]: the testing section itself."""
    if not settings:
        return list(spec.tests())
    unknown = [name for name in settings if name not in spec.test_settings]
    if unknown:
        known = ", ".join(spec.test_settings) or "none: the config has no testing.settings"
        raise ConfigError(f"unknown test setting {', '.join(repr(n) for n in unknown)}; known: {known}")
    return list(dict.fromkeys(settings))


def _testers(spec: ExperimentSpec, target: _TestTarget, chosen: list[str | None],
             device: str) -> tuple[dict[str | None, Any], dict[str, Any]]:
    """A Tester per setting with the weights loaded, and the checkpoint's payload: everything is built before
    any folder is written, so bad input writes nothing."""
    from miprometheus.problems.assets import read_assets_file
    from miprometheus.workers.tester import Tester, load_weights

    # The training run's vocabularies / answer sets, never ones built from the testing split (DESIGN §15).
    folder = target.experiment_folder
    assets_file = folder / ASSETS if folder is not None else None
    assets = read_assets_file(assets_file) if assets_file is not None else None
    assets_source = (f"no {assets_file}" if assets_file is not None else
                     f"the checkpoint is not in an experiment folder's {MODELS_DIR}/ (whose {ASSETS} holds them)")
    seed = _testing_seed(folder, spec)
    testers = {name: Tester(spec, seed, device, assets, assets_source, setting=name) for name in chosen}
    payloads = [load_weights(tester.model, target.checkpoint, tester.device) for tester in testers.values()]
    return testers, payloads[0]


def _testing_config(spec: ExperimentSpec, testers: dict[str | None, Any], checkpoint: Path,
                    payload: dict[str, Any]) -> dict[str, Any]:
    """The effective config of a test: the model as trained (a test without model_overrides: its problem
    supplied the values it records) and where the weights came from."""
    tree = spec.effective_tree(next((t.model.params for t in testers.values() if not t.section.model_overrides), None))
    tree.setdefault("testing", {})["checkpoint"] = str(checkpoint.resolve())
    tree["testing"]["checkpoint_selected_by"] = payload.get("selected_by")
    return tree


def _run_setting(name: str | None, tester: Any, folder: Path, tree: dict[str, Any], spec: ExperimentSpec,
                 options: RunOptions, experiment: ExperimentFolder, checkpoint: Path) -> dict[str, float]:
    """Test one setting into ``folder`` (its own sub-folder for a named setting); its aggregated statistics."""
    from miprometheus.config.yaml_loader import dump_yaml
    from miprometheus.files import atomic_write_text
    from miprometheus.layout import VISUALIZATIONS_DIR
    from miprometheus.workers.tester import write_test_results

    where = folder if name is None else folder / name
    if name is not None:
        # A setting's folder holds the statistics and the configuration of that setting alone.
        where.mkdir()
        own = {key: value for key, value in tree.items() if key != "testing"}
        own["testing"] = {**spec.section_tree(spec.test_settings[name]), "setting": name,
                          "checkpoint": tree["testing"]["checkpoint"],
                          "checkpoint_selected_by": tree["testing"]["checkpoint_selected_by"]}
        atomic_write_text(where / TESTING_CONFIG, dump_yaml(own))
    experiment.logger.info("testing %s on %s%s", checkpoint, tester.problem.name,
                           "" if name is None else f" (test setting {name})")
    rows, agg = tester.run(experiment.logger)
    write_test_results(where, rows, agg, tester.samples)
    if options.visualize is not None:
        written = tester.visualize(where / VISUALIZATIONS_DIR, options.visualize)
        if written:
            experiment.logger.info("visualizations: %d files in %s", len(written), where / VISUALIZATIONS_DIR)
    return agg if name is None else {f"{name}/{key}": value for key, value in agg.items()}


def test(target: Path | str, overrides: list[str], options: RunOptions, checkpoint: Path | None = None,
         extra_configs: list[str] | None = None, settings: list[str] | None = None) -> tuple[Path, dict[str, float]]:
    """Test a trained model: an experiment folder (its config and best model) or a config with --model.

    Returns the test folder and the aggregated statistics; with named test settings (``testing.settings``) each
    setting is tested into ``<test folder>/<setting>/`` and its statistics are keyed ``<setting>/<statistic>``.
    ``settings``: test only these named settings (default: every one).
    """
    from miprometheus.config.yaml_loader import dump_yaml
    from miprometheus.files import atomic_write_text
    from miprometheus.locks import lock_holder
    from miprometheus.workers.callbacks.checkpoints import NEVER_VALIDATED
    from miprometheus.workers.tester import make_test_folder

    device = check_device(options.device, options.threads)
    check_visualize(options.visualize)
    found = _test_target(Path(target), checkpoint, extra_configs)
    spec = validate(load_config(found.config_files, overrides), required=("testing", "model"))
    testers, payload = _testers(spec, found, _chosen_settings(spec, settings), device)
    parent = found.experiment_folder or ExperimentFolder.create(spec, options, split="testing").complete()
    folder = make_test_folder(parent)
    experiment = ExperimentFolder(folder, options, log_name=TESTER_LOG)
    # A test takes no lock: it writes only its own new test_<timestamp>/ folder and reads checkpoints that
    # are replaced atomically, so testing a run that is still training is safe (its best weights so far).
    holder = lock_holder(parent) if found.experiment_folder is not None else None
    if holder is not None:
        experiment.logger.info("%s is still in use (%s): testing the weights it has saved so far", parent, holder)
    tree = _testing_config(spec, testers, found.checkpoint, payload)
    atomic_write_text(folder / TESTING_CONFIG, dump_yaml(tree))
    if payload.get("selected_by") == NEVER_VALIDATED:
        experiment.logger.warning("the weights tested were never validated: training stopped at episode %s, "
                                  "before its first validation", payload.get("episode"))
    results: dict[str, float] = {}
    for name, tester in testers.items():
        results.update(_run_setting(name, tester, folder, tree, spec, options, experiment, found.checkpoint))
    experiment.logger.info("test results in %s", folder)
    if spec.tracking is not None and spec.tracking.mlflow is not None:
        from miprometheus.workers.callbacks.mlflow_tracking import track_test

        track_test(spec, parent, folder, results, payload.get("episode"), experiment.logger)
    experiment.close()
    return folder, results


def check(config_paths: list[str], overrides: list[str]) -> tuple[ExperimentSpec, list[str], Any]:
    """Validate a config and run the handshake of the model with every split's problem; train nothing.

    Returns the spec, one report line per split, and the model's parameters as the first split built them
    (training's when there is one: the values its problem supplies included), for the effective config."""
    from miprometheus.workers.setup import set_up_split

    config = load_config(config_paths, overrides)
    required = ("model",) if "training" in config.tree or "testing" not in config.tree else ("testing", "model")
    spec = validate(config, required=required)
    if not spec.splits:
        raise ConfigError("the config has no training, validation or testing section")
    report = []
    assets = model_params = training_values = None
    splits = sorted(spec.splits.items(), key=lambda item: item[0] != "training")  # training first
    if spec.test_settings:  # the named test settings replace the testing section they change
        splits = [(n, s) for n, s in splits if n != "testing"] + [(s.name, s) for s in spec.test_settings.values()]
    for name, split in splits:
        # the training split also loads the weights to start from and finds the submodules to freeze
        # a validation or test split runs the model training builds: built with the training problem's values
        prepared = set_up_split(spec, split, "cpu", sampler_seed=0, assets=assets, own_assets=name == "training",
                                assets_optional=True, model_values=None if name == "training" else training_values)
        problem, model = prepared.problem, prepared.model
        if name == "training":
            assets, training_values = prepared.assets, problem.default_values
        if prepared.lacks_assets:
            report.append(f"{name}: problem {problem.name} needs the assets of a training run; "
                          "mip test EXPERIMENT_DIR checks it with them")
            continue
        if model_params is None:
            model_params = model.params
        count = sum(p.numel() for p in model.parameters())
        report.append(f"{name}: model {model.name} ({count:,} parameters) fits problem {problem.name} "
                      f"({prepared.loader.num_samples:,} samples, batch {problem.batch_size})")
    return spec, report, model_params

"""Run a grid: create its folder, then train (or test) every experiment through an executor, resumably.

The grid process owns the manifest. Each experiment is a ``mip`` child command; a child that is
killed is retried (resuming from its last checkpoint) up to ``retries`` times, a child that
fails on bad input (exit code 2) is not; one failure never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miprometheus.config.yaml_loader import dump_yaml, load_yaml
from miprometheus.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ConfigError, MipError
from miprometheus.files import atomic_write_text, create_unique_dir, timestamp
from miprometheus.layout import (
    GRID_ABANDONED_DIR,
    GRID_CONFIG,
    GRID_DIR_PREFIX,
    LAST,
    MODELS_DIR,
    RUN_INFO,
    grid_config_file,
    grid_log_file,
    grid_output_dir,
)
from miprometheus.locks import FolderLock, lock_holder, pid_alive
from miprometheus.workers.commands import RESUME_FLAG, resume_command, shell_line
from miprometheus.workers.grid.analysis.collect import read_json
from miprometheus.workers.grid.analysis.live_report import LiveReport
from miprometheus.workers.grid.executors import Executor, Job, JobResult, make_executor
from miprometheus.workers.grid.folders import newest_experiment, newest_test
from miprometheus.workers.grid.manifest import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SEARCH,
    ExperimentRecord,
    Manifest,
    now,
)
from miprometheus.workers.grid.mlflow_grid import GridTracking
from miprometheus.workers.grid.search import Search, search_info, task_config_file
from miprometheus.workers.grid.spec import GridSettings, GridSpec, load_grid, load_settings, set_dotted
from miprometheus.workers.grid.status import StatusReader

POLL_SECONDS = 0.2
#: how often the live table on the grid's terminal is read again
LIVE_TABLE_SECONDS = 1.0
#: how long a resumed grid waits for a child of the grid process that died to write its checkpoint and end
ORPHAN_SECONDS = 60
#: the run_info.json statuses of a training that has ended for good (its `mip train` exits 0)
TRAINED = ("completed", "pruned")


class GridInterrupted(MipError):
    """The grid process was stopped by SIGINT/SIGTERM; re-running it resumes."""

    exit_code = EXIT_INTERRUPTED


def create_grid(spec: GridSpec, expdir: Path, savetag: str = "") -> Manifest:
    """Make the grid folder: its effective grid file, one config per experiment, and the manifest.

    A grid with a search starts with no experiment: it keeps each task's base config, and its trials are
    added to the manifest as the grid process asks for them (``search.py``).
    """
    folder = create_unique_dir(Path(expdir), f"{GRID_DIR_PREFIX}{timestamp()}" + (f"_{savetag}" if savetag else ""))
    effective = dict(spec.raw)
    effective["grid_tasks"] = [{"default_configs": t.default_configs, "overwrite": t.overwrite, "name": t.name,
                                **({"search_space": t.search_space} if t.search_space else {})}
                               for t in spec.tasks]
    settings = dict(vars(spec.settings))
    if spec.settings.search is not None:
        settings["search"] = spec.settings.search.to_dict()
    effective["grid_settings"] = {**(spec.raw.get("grid_settings") or {}), **settings}
    atomic_write_text(folder / GRID_CONFIG, dump_yaml(effective))
    records = []
    for experiment in spec.experiments:
        config = grid_config_file(experiment.id)
        atomic_write_text(folder / config, dump_yaml(experiment.config))
        extra = ({"after": experiment.after, "after_folder_keys": experiment.after_folder_keys}
                 if experiment.after else {})
        records.append(ExperimentRecord(id=experiment.id, task=experiment.task, repetition=experiment.repetition,
                                        sweep=experiment.sweep, seed=experiment.seed, config=config,
                                        config_hash=experiment.config_hash, extra=extra))
    info: dict[str, Any] = {"grid_file": str(spec.path), "created": timestamp(), "experiments": len(records)}
    if spec.settings.search is not None:
        seed = spec.settings.seed if spec.settings.seed != -1 else secrets.randbelow(2**31 - 1)
        info["search"] = search_info(spec.search_tasks, seed)
        for task in spec.search_tasks:
            atomic_write_text(folder / task_config_file(task.name), dump_yaml(task.config))
    manifest = Manifest(folder, records, info)
    manifest.save()
    return manifest


@dataclass
class Phase:
    """What a run of the grid does to each experiment: train it or test it."""

    name: str  # "train" or "test"

    def prefix(self) -> str:
        return "" if self.name == "train" else "test_"

    def status(self, record: ExperimentRecord) -> str:
        return getattr(record, self.prefix() + "status")

    def attempts(self, record: ExperimentRecord) -> int:
        return getattr(record, self.prefix() + "attempts")

    def eligible(self, record: ExperimentRecord) -> bool:
        if self.name == "test" and record.phase == SEARCH:
            return False  # a search trial is chosen on validation; only its re-evaluations are tested
        if self.name == "test":
            return record.status == DONE and record.folder is not None and record.test_status != DONE
        return record.status != DONE


class GridRunner:
    """Runs the experiments of one grid folder through an executor, keeping the manifest current."""

    def __init__(self, folder: Path, phase: str = "train", executor: Executor | None = None,
                 settings: GridSettings | None = None, progress: bool | None = None,
                 logger: logging.Logger | None = None, final_report: bool = True) -> None:
        self.folder = Path(folder).resolve()
        # both files are checked before anything is written: a damaged grid folder is left as it is (exit 2)
        self.manifest = Manifest.load(self.folder)
        self.settings = settings or load_settings(self.folder)
        self.phase = Phase(phase)
        self.executor = executor
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.logger = logger or logging.getLogger("miprometheus.grid")
        self._stop: str | None = None
        self.search: Search | None = None
        # the grid's MLflow parent runs, for the experiments whose configs ask for tracking (training only)
        self.tracking = GridTracking(self.folder, self.logger) if phase == "train" else None
        self._held_logged: set[str] = set()  # experiments said to wait for another process in their folder
        # report.html while the grid runs; its last page is the grid's final one unless this command goes on
        # (`mip grid run`: tests and analysis follow)
        self.report = LiveReport(self.folder, self.logger, final=final_report)
        self._status: StatusReader | None = None  # the live console table's reading
        self._shown_at = 0.0

    # --- jobs -----------------------------------------------------------------------------------
    def threads(self) -> int:
        if self.settings.cpus_per_experiment:
            return self.settings.cpus_per_experiment
        return max(1, (os.cpu_count() or 1) // self.settings.max_concurrent_runs)

    def make_job(self, record: ExperimentRecord) -> Job:
        attempt = self.phase.attempts(record) + 1
        if self.phase.name == "test":
            log = grid_log_file(record.id, self.phase.name)
            return Job(record.id, ["test", record.folder, "--no-progress"], self.folder, log,
                       inputs=[record.folder], outputs=[record.folder], threads=self.threads(),
                       gpus=self.settings.gpus_per_experiment)
        output = grid_output_dir(record.id)
        log = grid_log_file(record.id, self.phase.name)
        existing = newest_experiment(self.folder / output)
        if existing is not None and (existing / MODELS_DIR / LAST).is_file():
            # a killed attempt continues from its last checkpoint instead of starting over
            args = resume_command(existing.relative_to(self.folder), ["--no-progress"])
            inputs = [output]
        else:
            if existing is not None:  # killed before its first checkpoint: set aside, start over
                parts = existing.relative_to(self.folder / output).parts
                aside = self.folder / output / GRID_ABANDONED_DIR / "_".join(parts)
                aside.parent.mkdir(parents=True, exist_ok=True)
                existing.rename(aside)
            args = ["train", record.config, "--expdir", output, "--no-progress", *self._tensorboard_args(record)]
            inputs = [record.config]
            after = record.extra.get("after") if self.phase.name == "train" else None
            if after:  # the experiment it starts from has trained (see _take_ready): point the keys at its folder
                source = self.manifest.get(after).folder
                self._write_after_config(record, source)
                inputs.append(source)
        self.logger.debug("%s attempt %d: mip %s", record.id, attempt, " ".join(args))
        env = self.tracking.job_env(record) if self.tracking is not None else {}
        return Job(record.id, args, self.folder, log, inputs=inputs, outputs=[output], threads=self.threads(),
                   gpus=self.settings.gpus_per_experiment, env=env)

    def _tensorboard_args(self, record: ExperimentRecord) -> list[str]:
        """``--tensorboard N`` with the grid's level; a search's experiments also name their parameters (HParams)."""
        if self.settings.tensorboard is None:
            return []
        args = ["--tensorboard", str(self.settings.tensorboard)]
        return args + (["--hparams", ",".join(record.params)] if record.params else [])

    def _write_after_config(self, record: ExperimentRecord, source: str) -> None:
        """Set the record's ``after_folder_keys`` in its config to the folder of the experiment it starts after,
        relative to the config file (paths in a config are read relative to it), so the grid folder can move."""
        path = self.folder / record.config
        config = load_yaml(path)[0] or {}  # the one reader (YAML 1.2, bounded)
        relative = os.path.relpath(self.folder / source, path.parent)
        for key in record.extra.get("after_folder_keys", []):
            set_dotted(config, key, relative)
        atomic_write_text(path, dump_yaml(config))

    def _update(self, record: ExperimentRecord, **changes: Any) -> None:
        prefix = self.phase.prefix()
        self.manifest.update(record.id, **{prefix + k if k in ("status", "attempts", "log", "exit_code",
                                                                "last_error") else k: v
                                             for k, v in changes.items()})

    # --- the loop ---------------------------------------------------------------------------------
    def recover_stale(self) -> None:
        """Experiments marked running by a grid process that died: wait for their children, then requeue.

        Whether one had in fact finished is decided when it would start again (``_take_ready``)."""
        for record in self.manifest.records:
            if self.phase.status(record) != RUNNING:
                continue
            pid = record.extra.get(f"{self.phase.name}_pid")
            if isinstance(pid, int) and self._our_child(record, pid):
                # the child got SIGTERM when the grid died (PR_SET_PDEATHSIG): it writes its checkpoint and ends
                deadline = time.time() + ORPHAN_SECONDS
                while pid_alive(pid) and time.time() < deadline:
                    time.sleep(0.1)
                if pid_alive(pid) and self._our_child(record, pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            # the attempt was cut short by the grid's death, not by the experiment: it is not counted
            self._update(record, status=PENDING, attempts=max(0, self.phase.attempts(record) - 1))
            if self.phase.name == "train":
                self.manifest.update(record.id, folder=self._folder_of(record))

    def _our_child(self, record: ExperimentRecord, pid: int) -> bool:
        """Whether ``pid`` is still the grid's child it was recorded for: on this host and a MI-Prometheus
        process (a pid is reused by the system; a grid resumed on another machine has no such child here)."""
        host = record.extra.get(f"{self.phase.name}_host")
        if host is not None and host != socket.gethostname():
            return False
        try:
            return b"miprometheus" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return False  # ended (or never was)
        except OSError:
            return pid_alive(pid)  # no /proc here: trust the pid

    def _experiment_folder(self, record: ExperimentRecord) -> Path | None:
        """The folder the phase's job works in: the newest training of the experiment, or the one it tests."""
        if self.phase.name == "train":
            return newest_experiment(self.folder / grid_output_dir(record.id))
        return self.folder / record.folder if record.folder else None

    def _held_elsewhere(self, record: ExperimentRecord) -> str | None:
        """Who holds the experiment folder's lock (a trainer left by a grid process that died, or one started
        by hand), or None. Such an experiment waits: a second `mip` in its folder would be refused."""
        folder = self._experiment_folder(record)
        return lock_holder(folder) if folder is not None else None

    def _adopt_if_trained(self, record: ExperimentRecord) -> bool:
        """Mark ``record`` done when its folder's run_info.json says its training has ended for good.

        A grid process killed between a child's end and reading its exit status left the experiment
        marked running; running it again would resume a finished training and end it a second time."""
        if self.phase.name != "train":
            return False
        folder = self._experiment_folder(record)
        if folder is None or read_json(folder / RUN_INFO).get("status") not in TRAINED:
            return False
        self._update(record, status=DONE, attempts=max(1, self.phase.attempts(record)), exit_code=0, last_error=None,
                     folder=str(folder.relative_to(self.folder)), ended=record.ended or now())
        self.logger.info("%s had finished training (%s): taken as done", record.id, folder / RUN_INFO)
        if self.search is not None:  # a trial: its study is told how it ended, as when its exit is read
            self.search.conclude(record, ok=True)
        if self.tracking is not None:
            self.tracking.ended(record)
        return True

    def _folder_of(self, record: ExperimentRecord) -> str | None:
        found = newest_experiment(self.folder / grid_output_dir(record.id))
        return str(found.relative_to(self.folder)) if found else None

    def run(self) -> Manifest:
        """Run the phase's jobs to their end, holding the grid folder's lock: a second grid process on the
        same folder is refused (exit 2, naming this one); the lock dies with this process, kill -9 included."""
        with FolderLock(self.folder, f"grid {self.phase.name}"):
            # as the last grid process left it (it may have ended between this runner's making and the lock)
            self.manifest = Manifest.load(self.folder)
            return self._run()

    def _run(self) -> Manifest:
        self.recover_stale()
        allowed = 1 + self.settings.retries
        queue = deque(r.id for r in self.manifest.records
                      if self.phase.eligible(r) and self.phase.attempts(r) < allowed
                      and not (self.phase.status(r) == FAILED and r.extra.get(f"{self.phase.name}_bad_input")))
        if self.phase.name == "train" and self.settings.search is not None:
            self.search = Search(self.folder, self.manifest, self.settings.search, self.settings.max_concurrent_runs)
        if self.executor is None:
            self.executor = make_executor(self.settings.executor, self.settings)
        running: list[tuple[Any, str, Job]] = []  # (handle, experiment id, job); handles need not be hashable
        old = self._install_signal_handlers()
        live = self._start_live()
        self.report.start()
        try:
            while self._stop is None:
                if self.search is not None:  # new trials for the free slots, then the re-evaluations
                    queue.extend(self.search.fill(self.settings.max_concurrent_runs - len(running) - len(queue)))
                if not (queue or running):
                    break
                ready, held = self._take_ready(queue, len(running))
                if not ready and not running and queue and not held:  # only experiments whose `after` never trains
                    for experiment_id in list(queue):
                        queue.remove(experiment_id)
                        self._update(self.manifest.get(experiment_id), status=FAILED,
                                     last_error="the experiment it starts after did not train")
                    break
                if ready:
                    many = getattr(self.executor, "submit_many", None)
                    jobs = [job for _, job in ready]
                    # SLURM gets the jobs that are ready together as one job array
                    handles = many(jobs) if many is not None and len(jobs) > 1 else [self.executor.submit(j)
                                                                                     for j in jobs]
                    for (record, job), handle in zip(ready, handles):
                        running.append((handle, record.id, job))
                        self._mark_started(record, job, handle)
                still_running = []
                for handle, experiment_id, job in running:
                    result = self.executor.poll(handle)
                    if result is None:
                        still_running.append((handle, experiment_id, job))
                    elif self._finish(self.manifest.get(experiment_id), result, allowed):
                        queue.append(experiment_id)
                changed = len(still_running) != len(running) or bool(ready)
                running = still_running
                if self.search is not None:
                    self.search.watch([experiment_id for _, experiment_id, _ in running])
                self._refresh_live(live)
                self.report.tick(changed)
                time.sleep(POLL_SECONDS)
        finally:
            if self._stop is not None:
                for handle, experiment_id, _ in running:
                    self.executor.cancel(handle)
                    record = self.manifest.get(experiment_id)
                    self._update(record, status=PENDING, attempts=max(0, self.phase.attempts(record) - 1))
                    if self.phase.name == "train":
                        self.manifest.update(experiment_id, folder=self._folder_of(record))
            self.executor.close()
            if self.tracking is not None:
                self.tracking.close(self.manifest, interrupted=self._stop is not None)
            self._stop_live(live)
            self._restore_signal_handlers(old)
            self.report.close(interrupted=self._stop is not None)
        if self._stop is not None:
            raise GridInterrupted(f"grid interrupted ({self._stop}); running experiments were checkpointed. "
                                  f"Continue with: {shell_line(['grid', self.phase.name, RESUME_FLAG, self.folder])}")
        return self.manifest

    def _take_ready(self, queue: deque[str], running: int) -> tuple[list[tuple[ExperimentRecord, Job]], bool]:
        """The jobs that can start now (concurrency limit, GPU tokens), taken off the queue; and whether one
        waits for another process to leave its folder.

        Before an experiment starts (again), its folder is looked at: one whose training has ended is
        taken as done, never run again; one that another process still works in waits for it."""
        ready: list[tuple[ExperimentRecord, Job]] = []
        held = False
        for experiment_id in list(queue):
            if running + len(ready) >= self.settings.max_concurrent_runs or self._stop is not None:
                break
            record = self.manifest.get(experiment_id)
            waiting = self._waits_for(record)
            if waiting == "wait":
                continue  # its experiment to start after has not trained yet: the next one may start
            if waiting is not None:  # that experiment failed for good: this one cannot run
                queue.remove(experiment_id)
                self._update(record, status=FAILED, last_error=waiting)
                self.logger.warning("%s failed: %s", record.id, waiting)
                continue
            holder = self._held_elsewhere(record)
            if holder is not None:
                if experiment_id not in self._held_logged:
                    self._held_logged.add(experiment_id)
                    self.logger.info("%s waits: its folder is in use by another process (%s)", record.id, holder)
                held = True
                continue
            if self._adopt_if_trained(record):
                queue.remove(experiment_id)
                continue
            job = self.make_job(record)
            if hasattr(self.executor, "can_start") and not self.executor.can_start(job):
                break
            queue.remove(experiment_id)
            ready.append((record, job))
        return ready, held

    def _waits_for(self, record: ExperimentRecord) -> str | None:
        """None: ``record`` may start; "wait": its ``after`` experiment has not trained yet; else why it never can."""
        after = record.extra.get("after") if self.phase.name == "train" else None
        if not after or record.status == DONE:
            return None
        source = self.manifest.get(after)
        if source.status == DONE and source.folder:
            return None
        if source.status == FAILED:
            return f"the experiment it starts after, {after}, failed"
        return "wait"

    def _mark_started(self, record: ExperimentRecord, job: Job, handle: Any) -> None:
        extra = dict(record.extra)
        if isinstance(handle, int):  # a local child's pid: a resumed grid waits for it to end (on this host)
            extra[f"{self.phase.name}_pid"] = handle
            extra[f"{self.phase.name}_host"] = socket.gethostname()
        self._update(record, status=RUNNING, attempts=self.phase.attempts(record) + 1, log=job.log, exit_code=None,
                     last_error=None, extra=extra, **({"started": now()} if self.phase.name == "train" else {}))
        self.logger.info("started %s (attempt %d): mip %s", record.id, self.phase.attempts(record),
                         " ".join(job.args))

    def _finish(self, record: ExperimentRecord, result: JobResult, allowed: int) -> bool:
        """Record how a job ended; return True when it should be tried again."""
        ok = result.exit_code == 0
        changes: dict[str, Any] = {"exit_code": result.exit_code, "last_error": None if ok else result.error}
        if self.phase.name == "train":
            changes["folder"] = self._folder_of(record)
            changes["ended"] = now()
        else:
            experiment = self.folder / record.folder if record.folder else None
            test_folder = newest_test(experiment) if experiment else None
            changes["test_folder"] = str(test_folder.relative_to(self.folder)) if test_folder else None
        bad_input = result.exit_code == EXIT_BAD_INPUT
        if bad_input and self._held_elsewhere(record) is not None:
            # refused because another process works in the folder (it took the folder's lock first): not
            # the experiment's fault, and not an attempt; it waits for that process (``_take_ready``)
            self._update(record, status=PENDING, attempts=max(0, self.phase.attempts(record) - 1), **changes)
            return True
        retry = not ok and not bad_input and self.phase.attempts(record) < allowed
        status = DONE if ok else (PENDING if retry else FAILED)
        if bad_input:
            extra = dict(record.extra)
            extra[f"{self.phase.name}_bad_input"] = True
            changes["extra"] = extra
        self._update(record, status=status, **changes)
        if self.search is not None and not retry:
            self.search.conclude(record, ok)
        if self.tracking is not None and not retry:
            self.tracking.ended(record)
        if ok:
            self.logger.info("finished %s", record.id)
        else:
            self.logger.warning("%s %s (exit code %s): %s%s", record.id, "will be retried" if retry else "failed",
                                result.exit_code, result.error, f" — log: {self.folder / record.log}"
                                if record.log else "")
        return retry

    # --- signals and the live table -------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            self._stop = signal.Signals(signum).name

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _start_live(self) -> Any:
        if not self.progress:
            return None
        from rich.live import Live

        live = Live(self._table(), refresh_per_second=2, transient=False)
        live.start()
        return live

    def _refresh_live(self, live: Any) -> None:
        if live is not None and time.monotonic() - self._shown_at >= LIVE_TABLE_SECONDS:
            live.update(self._table())

    def _stop_live(self, live: Any) -> None:
        if live is not None:
            live.update(self._table())
            live.stop()

    def _table(self) -> Any:
        """The table of ``mip grid status``, as this grid process sees its grid."""
        from miprometheus.workers.grid.watch import table

        self._shown_at = time.monotonic()
        if self._status is None:
            self._status = StatusReader(self.folder, self.settings)
        return table(self._status.read(running=True))


def train_grid(grid_file: Path | None, overrides: list[str], expdir: Path, savetag: str = "",
               resume: Path | None = None, progress: bool | None = None,
               logger: logging.Logger | None = None, final_report: bool = True) -> Manifest:
    """``mip grid train``: a new grid from a grid file, or the rest of an existing grid folder.

    ``final_report``: False when more follows in the same command (tests, the analysis), so that the live
    ``report.html`` keeps reloading until then."""
    if resume is not None:
        if overrides:
            raise ConfigError("a resumed grid keeps its own configuration: give no key=value overrides")
        if grid_file is not None and Path(grid_file).resolve() != Path(resume).resolve():
            raise ConfigError(f"a grid file ({grid_file}) and --resume {resume} given together: a resumed grid runs "
                              f"with its own configuration ({Path(resume) / GRID_CONFIG}), so the grid file would "
                              "be ignored. Give --resume GRID_DIR alone to continue that grid, or the grid file "
                              "alone to start a new one")
        folder = Path(resume)
    else:
        spec = load_grid(grid_file, overrides)
        folder = create_grid(spec, expdir, savetag).folder
    runner = GridRunner(folder, "train", progress=progress, logger=logger, final_report=final_report)
    return runner.run()


def test_grid(folder: Path, progress: bool | None = None, logger: logging.Logger | None = None,
              final_report: bool = True) -> Manifest:
    """``mip grid test``: test every trained experiment's best model (resumable the same way)."""
    return GridRunner(Path(folder), "test", progress=progress, logger=logger, final_report=final_report).run()


test_grid.__test__ = False  # not a pytest test

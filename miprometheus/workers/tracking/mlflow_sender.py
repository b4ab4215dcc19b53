"""One MLflow run, logged by a process of its own: training never waits for the tracker, nor fails with it.

:class:`MlflowSender` is what a training, a test or a grid holds. Its methods only queue a request and return at
once, and never raise; a thread of the sender writes the requests to a process running ``mlflow_engine.py`` (as
JSON lines), which imports MLflow and sends them through outages; another thread reads that process's events
(the run's id, warnings for the log, the end). A separate process, not a thread: importing MLflow takes seconds
of CPU, and encoding and sending requests in the training's own interpreter would take turns with its loop.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from miprometheus.workers.tracking.mlflow_values import (
    METRICS_PER_REQUEST,
    PARAMS_PER_REQUEST,
    MetricEntry,
    now_ms,
)

#: the module the sending process runs
ENGINE = "miprometheus.workers.tracking.mlflow_engine"
#: seconds given to the sending process, beyond ``close``'s timeout, to report how it ended before it is killed
CLOSE_MARGIN_SECONDS = 10.0


class MlflowSender:
    """Logs one MLflow run at ``uri``, in ``experiment``, through a process of its own.

    ``run_id``: continue that run (a resumed experiment, a test of a trained one), else create one named
    ``run_name`` with ``tags`` (nested in ``parent_run_id``), whose id the sending process records in ``folder``'s
    ``mlflow_run.json``. ``reopen``: mark a continued run running again (a resume), until :meth:`end`.
    """

    def __init__(self, uri: str, experiment: str, *, run_name: str | None = None, folder: Path | None = None,
                 run_id: str | None = None, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 start_time: int | None = None, reopen: bool = True, logger: logging.Logger | None = None) -> None:
        self.uri, self.folder = uri, folder
        self.logger = logger or logging.getLogger("miprometheus.tracking")
        self.run_id: str | None = None
        self.unsent = 0  # metric values the sending process reported not sent
        self._run_known = threading.Event()
        self._closed = threading.Event()
        self._cond = threading.Condition()
        self._requests: deque[dict[str, Any]] = deque()
        self._ending = False
        self._process: subprocess.Popen | None = None
        self._put({"op": "open", "uri": uri, "experiment": experiment, "run_name": run_name,
                   "folder": None if folder is None else str(folder), "run_id": run_id,
                   "parent_run_id": parent_run_id, "tags": dict(tags or {}), "start_time": start_time,
                   "reopen": reopen})
        try:
            # its own session: a Ctrl-C meant for the training (which stops at the end of its episode) leaves it be
            self._process = subprocess.Popen([sys.executable, "-m", ENGINE], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            self.logger.warning("MLflow tracking is off for this run: its sending process did not start (%s)", exc)
            self._run_known.set()
            self._closed.set()
            return
        threading.Thread(target=self._write, name="mlflow-requests", daemon=True).start()
        threading.Thread(target=self._read, name="mlflow-events", daemon=True).start()

    # --- what the run logs: returns at once, never raises ------------------------------------------------------
    def log_params(self, params: Mapping[str, str]) -> None:
        items = list(params.items())
        for start in range(0, len(items), PARAMS_PER_REQUEST):
            self._put({"op": "params", "params": dict(items[start:start + PARAMS_PER_REQUEST])})

    def log_metrics(self, entries: Iterable[MetricEntry]) -> None:
        entries = [list(entry) for entry in entries]
        for start in range(0, len(entries), METRICS_PER_REQUEST):
            self._put({"op": "metrics", "entries": entries[start:start + METRICS_PER_REQUEST]})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._put({"op": "tags", "tags": {key: str(value) for key, value in tags.items()}})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder (as it is when the request is sent) under ``artifact_path``."""
        self._put({"op": "artifact", "path": str(path), "artifact_path": artifact_path})

    def sync_folder(self, folder: Path, until_episode: int | None = None) -> None:
        """Send what ``folder`` holds and the run lacks, up to ``until_episode`` (a resumed run's earlier values)."""
        self._put({"op": "sync", "folder": str(folder), "until_episode": until_episode})

    def tag_run_of(self, folder: Path, tags: Mapping[str, str]) -> None:
        """Set tags on the run that ``folder`` records at this destination (a grid's experiment), if it has one."""
        self._put({"op": "tag_folder_run", "folder": str(folder), "tags": dict(tags)})

    def end(self, status: str) -> None:
        """End the run with an MLflow status (FINISHED, FAILED, KILLED)."""
        self._put({"op": "end", "status": status, "end_time": now_ms()})

    def wait_for_run(self, timeout: float) -> str | None:
        """The run's id, waiting at most ``timeout`` seconds for the run to exist; None if it does not yet."""
        self._run_known.wait(timeout)
        return self.run_id

    def close(self, timeout: float) -> bool:
        """Let the sending process send what is left within ``timeout`` seconds (it names in the log what it could
        not), and end it. Whether everything logged reached MLflow."""
        self._put({"op": "close", "timeout": timeout})
        try:
            finished = self._closed.wait(timeout + CLOSE_MARGIN_SECONDS)
        except KeyboardInterrupt:  # a user who stops the wait: the run's folder has everything
            finished = False
        if self._process is not None:
            if not finished and self._process.poll() is None:
                self._process.kill()
                self.logger.warning("MLflow tracking: the sending process did not end within %.0f s and was stopped; "
                                    "what it had not sent is missing there (the experiment folder has it all)",
                                    timeout + CLOSE_MARGIN_SECONDS)
            self._process.wait()
        return finished and self.unsent == 0 and self.run_id is not None

    # --- the two threads --------------------------------------------------------------------------------------
    def _put(self, request: dict[str, Any]) -> None:
        with self._cond:
            if self._ending:
                return
            self._ending = request["op"] == "close"
            self._requests.append(request)
            self._cond.notify_all()

    def _write(self) -> None:
        """Write the requests to the sending process, in order, until ``close``."""
        pipe = self._process.stdin
        while True:
            with self._cond:
                while not self._requests:
                    self._cond.wait()
                request = self._requests.popleft()
            try:
                pipe.write(json.dumps(request) + "\n")
                pipe.flush()
                if request["op"] == "close":
                    pipe.close()
                    return
            except (OSError, ValueError):  # the process ended (it reported why): nothing more can be sent
                return

    def _read(self) -> None:
        """Take the sending process's events: the run's id, warnings to log, how it closed."""
        for line in self._process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "run":
                self.run_id = event.get("run_id")
                self._run_known.set()
            elif kind == "log":
                self.logger.log(logging.getLevelName(event.get("level", "WARNING")), "%s", event.get("message"))
            elif kind == "closed":
                self.unsent = int(event.get("unsent") or 0)
                self.run_id = event.get("run_id") or self.run_id
        self._run_known.set()
        self._closed.set()

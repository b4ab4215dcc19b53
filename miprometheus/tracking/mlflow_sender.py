"""One MLflow run, logged from a background thread: training never waits for the tracker, nor fails with it.

The training thread only appends to a queue (:class:`MlflowSender`'s methods return at once and never raise);
the sender thread imports MLflow, creates or continues the run, and sends the queue in order, consecutive
metric values together (``log_batch``, up to MLflow's 1,000 per request). A tracker that does not answer is a
warning, once per outage: the sender keeps what waits (in memory up to :data:`MAX_QUEUED_VALUES` metric
values, then in a temporary file) and tries again, waiting twice as long each time up to
:data:`RETRY_MAX_SECONDS`, so everything logged during the outage is sent when it answers again. A request
MLflow refuses (a parameter changed on resume, an experiment deleted) is a warning and is dropped. At the end,
:meth:`MlflowSender.close` waits a bounded time for what is left and names what it could not send.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miprometheus.tracking.mlflow_values import (
    MAX_TAG_LENGTH,
    METRICS_PER_REQUEST,
    PARAMS_PER_REQUEST,
    PARENT_TAG,
    MetricEntry,
    now_ms,
    record_run,
)

#: metric values kept in memory while MLflow does not take them; those logged beyond wait in a temporary file
MAX_QUEUED_VALUES = 200_000
#: seconds between two tries while MLflow does not answer: from the first, doubling, up to the last
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
#: MLflow's HTTP settings the sender lowers when the user has not set them: one quick try per request (the
#: sender retries itself, without holding up anything but its own queue)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
#: MLflow error codes that refuse the request itself: sending it again would be refused again
REFUSED_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                           "PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED", "BAD_REQUEST",
                           "INVALID_STATE", "NOT_FOUND", "ENDPOINT_NOT_FOUND", "FEATURE_DISABLED"})
#: refusals named one by one in the log; later ones are only counted
REFUSALS_NAMED = 10


class Refused(Exception):
    """MLflow cannot take a request, whatever the retries (a deleted experiment, a run that is gone)."""


@dataclass
class _Op:
    """One request waiting in the queue."""

    kind: str  # start, params, metrics, spilled, tags, artifact, call, end
    payload: Any = None
    values: int = 0  # the metric values it holds


class MlflowSender:
    """Logs one MLflow run at ``uri``, in ``experiment``, from a background thread.

    ``run_id``: continue that run (a resumed experiment, a test of a trained one), else create one named
    ``run_name`` with ``tags`` (nested in ``parent_run_id``), whose id is then recorded in ``folder``'s
    ``mlflow_run.json``. ``reopen``: mark a continued run running again (a resume), until :meth:`end`.
    """

    def __init__(self, uri: str, experiment: str, *, run_name: str | None = None, folder: Path | None = None,
                 run_id: str | None = None, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 start_time: int | None = None, reopen: bool = True, logger: logging.Logger | None = None) -> None:
        self.uri, self.experiment, self.run_name, self.folder = uri, experiment, run_name, folder
        self.run_id, self.parent_run_id, self.start_time, self.reopen = run_id, parent_run_id, start_time, reopen
        self.tags = {key: str(value)[:MAX_TAG_LENGTH] for key, value in (tags or {}).items()}
        self.logger = logger or logging.getLogger("miprometheus.tracking")
        self.unsent = 0  # metric values dropped (refused, or given up at the end)
        self._continued = run_id is not None
        self._run_ready = threading.Event()
        self._give_up = threading.Event()
        self._cond = threading.Condition()
        self._ops: deque[_Op] = deque([_Op("start")])
        self._queued = 0  # metric values in memory
        self._current: _Op | None = None  # the request being sent
        self._spill: Any = None
        self._spill_end = 0
        self._closing = False
        self._broken: str | None = None
        self._outage_since: float | None = None
        self._refusals = 0
        self._client: Any = None
        self._existing_params: dict[str, str] | None = None
        for key, value in HTTP_DEFAULTS.items():  # read by MLflow at each request
            os.environ.setdefault(key, value)
        self._thread = threading.Thread(target=self._main, name="mlflow-sender", daemon=True)
        self._thread.start()

    # --- what the run logs: called from the training thread, returns at once, never raises ----------------------
    def log_params(self, params: Mapping[str, str]) -> None:
        items = list(params.items())
        for start in range(0, len(items), PARAMS_PER_REQUEST):
            self._put(_Op("params", dict(items[start:start + PARAMS_PER_REQUEST])))

    def log_metrics(self, entries: Iterable[MetricEntry]) -> None:
        entries = list(entries)
        for start in range(0, len(entries), METRICS_PER_REQUEST):
            chunk = entries[start:start + METRICS_PER_REQUEST]
            self._put(_Op("metrics", chunk, len(chunk)))

    def set_tags(self, tags: Mapping[str, str] | Callable[[], Mapping[str, str]]) -> None:
        """Set tags; a callable is called in the sender thread (a value slow to find, such as the git commit)."""
        self._put(_Op("tags", tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder (when the sender reaches it: the file as it is then) under ``artifact_path``."""
        self._put(_Op("artifact", (Path(path), artifact_path)))

    def call(self, function: Callable[[Any, str], None], what: str) -> None:
        """Run ``function(client, run_id)`` in the sender thread, in the queue's order (``what``: its name)."""
        self._put(_Op("call", (function, what)))

    def end(self, status: str) -> None:
        """End the run with an MLflow status (FINISHED, FAILED, KILLED)."""
        self._put(_Op("end", (status, now_ms())))

    def wait_for_run(self, timeout: float) -> str | None:
        """The run's id, waiting at most ``timeout`` seconds for it to be created; None if it is not there yet."""
        self._run_ready.wait(timeout)
        return self.run_id if self._run_ready.is_set() else None

    def pending(self) -> int:
        """The requests not sent yet."""
        with self._cond:
            return len(self._ops) + (self._current is not None)

    def close(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for everything queued to be sent, then stop the thread (what is left is
        named in a warning). Whether everything logged reached MLflow."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self._thread.join(timeout)
        except KeyboardInterrupt:  # a user who stops the wait: the run itself has ended, nothing is lost on disk
            pass
        if self._thread.is_alive():
            self._give_up.set()
            with self._cond:
                self._cond.notify_all()
                left = self._queued + (self._current.values if self._current is not None else 0) + sum(
                    op.values for op in self._ops if op.kind == "spilled")
            self.unsent += left
            self.logger.warning(
                "MLflow at %s took not everything within %.0f s (tracking.mlflow.flush_timeout): %d metric values "
                "and %d other requests were not sent. The experiment folder has them all: send them with "
                "mip grid log-to-mlflow %s", self.uri, timeout, left, self.pending(), self.folder or "FOLDER")
        self._close_spill()
        return self.unsent == 0 and self._broken is None and not self._thread.is_alive()

    def _put(self, op: _Op) -> None:
        try:
            with self._cond:
                if op.kind == "metrics" and self._queued + op.values > MAX_QUEUED_VALUES:
                    op = self._spilled(op)
                elif op.kind == "metrics":
                    self._queued += op.values
                self._ops.append(op)
                self._cond.notify_all()
        except Exception as exc:  # a full disk for the spill file: those values are lost to MLflow, not to the folder
            self.unsent += op.values
            self.logger.warning("MLflow tracking dropped %d values (%s: %s); the experiment folder keeps them",
                                op.values, type(exc).__name__, exc)

    def _spilled(self, op: _Op) -> _Op:
        """Metric values MLflow has not taken, past what waits in memory: written to a temporary file."""
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="mip-mlflow-")
        data = "".join(json.dumps(list(entry)) + "\n" for entry in op.payload).encode()
        os.pwrite(self._spill.fileno(), data, self._spill_end)
        spilled = _Op("spilled", (self._spill_end, len(data)), op.values)
        self._spill_end += len(data)
        return spilled

    def _close_spill(self) -> None:
        if self._spill is not None and not self._thread.is_alive():
            self._spill.close()

    # --- the sender thread ------------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        except Exception as exc:  # MLflow missing or broken: the run goes on untracked
            self._broken = f"{type(exc).__name__}: {exc}"
            self.logger.warning("MLflow tracking is off for this run: MLflow cannot be used (%s)", self._broken)
            return
        while True:
            op = self._take()
            if op is None:
                return
            try:
                self._deliver(op)
            finally:
                with self._cond:
                    self._current = None

    def _take(self) -> _Op | None:
        """The next request: consecutive metric values go together, up to MLflow's limit per request."""
        with self._cond:
            while not self._ops and not self._closing and not self._give_up.is_set():
                self._cond.wait()
            if self._give_up.is_set() or not self._ops:
                return None
            op = self._ops.popleft()
            if op.kind in ("metrics", "spilled"):
                entries = self._entries(op)
                while self._ops and self._ops[0].kind in ("metrics", "spilled") and (
                        len(entries) + self._ops[0].values <= METRICS_PER_REQUEST):
                    entries += self._entries(self._ops.popleft())
                op = _Op("metrics", entries, len(entries))
            self._current = op
            return op

    def _entries(self, op: _Op) -> list[MetricEntry]:
        if op.kind == "metrics":
            self._queued -= op.values
            return list(op.payload)
        offset, length = op.payload
        text = os.pread(self._spill.fileno(), length, offset).decode()
        return [MetricEntry(*json.loads(line)) for line in text.splitlines()]

    def _deliver(self, op: _Op) -> None:
        """Send one request until MLflow takes it or refuses it, or the sender gives up (``close``)."""
        delay = RETRY_FIRST_SECONDS
        while True:
            if self._broken is not None and op.kind != "start":
                self.unsent += op.values
                return
            try:
                self._perform(op)
            except Exception as exc:
                if not _transient(exc):
                    self._refused(op, exc)
                    return
                self._unreachable(exc)
                if self._give_up.wait(delay):
                    return
                delay = min(2 * delay, RETRY_MAX_SECONDS)
                continue
            self._reachable()
            return

    def _perform(self, op: _Op) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client
        if op.kind == "start":
            self._start_run()
        elif op.kind == "params":
            params = self._new_params(op.payload)
            if params:
                client.log_batch(self.run_id, params=[Param(key, value) for key, value in params.items()])
        elif op.kind == "metrics":
            client.log_batch(self.run_id, metrics=[Metric(e.key, e.value, e.timestamp, e.step) for e in op.payload])
        elif op.kind == "tags":
            tags = op.payload() if callable(op.payload) else op.payload
            items = [RunTag(key, str(value)[:MAX_TAG_LENGTH]) for key, value in tags.items()]
            for start in range(0, len(items), PARAMS_PER_REQUEST):
                client.log_batch(self.run_id, tags=items[start:start + PARAMS_PER_REQUEST])
        elif op.kind == "artifact":
            path, artifact_path = op.payload
            if path.is_dir():
                client.log_artifacts(self.run_id, str(path), artifact_path)
            elif path.is_file():
                client.log_artifact(self.run_id, str(path), artifact_path)
        elif op.kind == "call":
            op.payload[0](client, self.run_id)
        elif op.kind == "end":
            status, end_time = op.payload
            client.set_terminated(self.run_id, status, end_time)

    def _start_run(self) -> None:
        """Continue the run given (marked running again on a resume), or create one, and record its id."""
        client = self._client
        if self.run_id is not None:
            run = existing_run(client, self.run_id)
            if run is not None:
                if self.reopen:
                    client.update_run(self.run_id, status="RUNNING")
                self._run_ready.set()
                return
            self.logger.warning("MLflow run %s (recorded in %s) is gone from %s: logging to a new run", self.run_id,
                                self.folder, self.uri)
            self.run_id, self._continued = None, False
        tags = dict(self.tags)
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        run = client.create_run(experiment_id(client, self.uri, self.experiment), start_time=self.start_time,
                                tags=tags, run_name=self.run_name)
        self.run_id = run.info.run_id
        self._run_ready.set()
        if self.folder is not None:
            try:
                record_run(self.folder, self.uri, self.experiment, self.run_id)
            except OSError as exc:
                self.logger.warning("MLflow run %s could not be recorded in %s (%s): a resume logs to a new run",
                                    self.run_id, self.folder, exc)

    def _new_params(self, params: dict[str, str]) -> dict[str, str]:
        """The parameters a continued run does not hold yet. MLflow keeps a parameter's first value: one changed
        since (an override on resume) is named in a warning and left as it was."""
        if not self._continued:
            return params
        if self._existing_params is None:
            self._existing_params = dict(self._client.get_run(self.run_id).data.params)
        changed = sorted(key for key, value in params.items()
                         if key in self._existing_params and self._existing_params[key] != value)
        if changed:
            self.logger.warning("MLflow run %s keeps the first values of its parameters: %s changed since and "
                                "stay%s as they were there (the experiment folder's config has the new values)",
                                self.run_id, ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""),
                                "s" if len(changed) == 1 else "")
        return {key: value for key, value in params.items() if key not in self._existing_params}

    # --- outages and refusals -----------------------------------------------------------------------------------
    def _unreachable(self, exc: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self.logger.warning("MLflow at %s does not answer (%s): training goes on; what it logs waits and is "
                                "sent when MLflow answers again", self.uri, _short(exc))

    def _reachable(self) -> None:
        if self._outage_since is not None:
            self.logger.warning("MLflow at %s answers again after %.0f s: sending what waited", self.uri,
                                time.monotonic() - self._outage_since)
            self._outage_since = None

    def _refused(self, op: _Op, exc: BaseException) -> None:
        self.unsent += op.values
        if op.kind == "start":  # no run: nothing else can be sent
            self._broken = _short(exc)
            self._run_ready.set()
            self.logger.warning("MLflow tracking is off for this run: %s refuses it (%s)", self.uri, self._broken)
            return
        self._refusals += 1
        if self._refusals <= REFUSALS_NAMED:
            what = op.payload[1] if op.kind == "call" else op.kind
            self.logger.warning("MLflow at %s refused %s of run %s (%s)%s", self.uri, what, self.run_id, _short(exc),
                                "; further refusals are only counted" if self._refusals == REFUSALS_NAMED else "")


def _transient(exc: BaseException) -> bool:
    """Whether a failed request may succeed later (a server down, slow or busy; a database locked)."""
    if isinstance(exc, Refused | FileNotFoundError):
        return False
    code = getattr(exc, "error_code", None)
    if isinstance(code, str):  # an MlflowException: a connection failure is INTERNAL_ERROR
        return code not in REFUSED_CODES
    return isinstance(exc, OSError | TimeoutError) or type(exc).__name__ == "OperationalError"


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name`` at ``uri``, made when missing (in a SQLite database, its files
    beside the database)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri))
        except Exception as exc:  # two runs of a grid made it at once: the other one's is ours
            if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise Refused(f"the MLflow experiment {name!r} is deleted at {uri}: restore it (mlflow experiments "
                      "restore) or name another in tracking.mlflow.experiment")
    return found.experiment_id


def existing_run(client: Any, run_id: str) -> Any:
    """The run, or None when it was deleted or never existed at this tracker."""
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return None if run.info.lifecycle_stage == "deleted" else run


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment in a SQLite database keeps its artifacts: beside the database file (MLflow's default
    would be ./mlruns in whatever folder the run starts in). A server decides for itself (None)."""
    if uri.lower().startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            return (Path(path).resolve().parent / "mlartifacts").as_uri()
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"

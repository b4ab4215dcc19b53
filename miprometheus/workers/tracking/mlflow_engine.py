"""The process that logs one MLflow run for a training, a test or a grid: ``python -m`` this module.

It reads requests as JSON lines on its standard input (``mlflow_sender.MlflowSender`` writes them) and answers
with events as JSON lines on its standard output: the run's id once the run exists, the warnings to log, and
how it closed. It runs apart from the training so that importing MLflow (seconds of CPU) and encoding and
sending requests never hold the training process's interpreter.

:class:`RunLog` keeps the requests in order and sends them, consecutive metric values together (``log_batch``,
up to MLflow's 1,000 per request, waiting up to :data:`LINGER_SECONDS` for more), at a lower priority than the
training (:data:`NICENESS`). A tracker that does not answer is a warning, once per outage: the requests wait
(metric values in memory up to :data:`MAX_QUEUED_VALUES`, then in a temporary file) and are tried again, the wait
doubling from :data:`RETRY_FIRST_SECONDS` to :data:`RETRY_MAX_SECONDS`, so everything logged during the outage is
sent when MLflow answers again. A request MLflow refuses (a parameter changed on resume, a deleted experiment) is
a warning and is dropped. On ``close`` it sends what is left within the time it is given, then names what it
could not send. When its input ends without ``close`` (the training process was killed), it sends what it has
within :data:`ORPHAN_SECONDS` and ends.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from miprometheus.workers.tracking.mlflow_values import (
    MAX_TAG_LENGTH,
    METRICS_PER_REQUEST,
    PARAMS_PER_REQUEST,
    PARENT_TAG,
    MetricEntry,
    record_run,
)

#: metric values kept in memory while MLflow does not take them; those logged beyond wait in a temporary file
MAX_QUEUED_VALUES = 200_000
#: seconds metric values wait for more before they are sent (fewer, larger requests: less work on both sides)
LINGER_SECONDS = 2.0
#: the niceness of the sending process: it takes the CPU the training leaves (its work waits, never the training's)
NICENESS = 10
#: seconds between two tries while MLflow does not answer: from the first, doubling, up to the last
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
#: seconds the process goes on sending when the process it logs for ended without closing it (killed)
ORPHAN_SECONDS = 60.0
#: MLflow's HTTP settings, unless the user set them: one quick try per request (this process retries itself)
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
    """One request waiting in the queue: its kind and fields as the sender wrote them."""

    kind: str  # open, params, metrics, spilled, tags, artifact, sync, tag_folder_run, end
    fields: dict[str, Any]
    values: int = 0  # the metric values it holds


class RunLog:
    """Sends the requests of one run to MLflow, in order, through outages (see the module's docstring).

    ``emit(event)`` reports to the sender: ``{"event": "run", "run_id": ...}`` once the run exists (None when it
    cannot), ``{"event": "log", "level": ..., "message": ...}`` for a warning."""

    def __init__(self, emit: Any) -> None:
        self.emit = emit
        self.uri = self.experiment = ""
        self.folder: Path | None = None
        self.run_id: str | None = None
        self.unsent = 0  # metric values given up on (the time to close ran out)
        self.refused = 0  # metric values MLflow refused
        self.settings: dict[str, Any] = {}
        self.give_up = threading.Event()
        self._cond = threading.Condition()
        self._ops: deque[_Op] = deque()
        self._queued = 0  # metric values in memory
        self._current: _Op | None = None
        self._spill: Any = None
        self._spill_end = 0
        self._closing = False
        self._broken: str | None = None
        self._continued = False
        self._outage_since: float | None = None
        self._refusals = 0
        self._client: Any = None
        self._existing_params: dict[str, str] | None = None

    # --- the queue: filled by the input thread, emptied by the sending loop ------------------------------------
    def put(self, kind: str, fields: dict[str, Any]) -> None:
        entries = fields.get("entries") or []
        op = _Op(kind, fields, len(entries))
        with self._cond:
            if kind == "metrics" and self._queued + op.values > MAX_QUEUED_VALUES:
                try:
                    op = self._spilled(op)
                except OSError as exc:  # a full disk: those values are lost to MLflow, not to the folder
                    self.refused += op.values
                    self.warn("MLflow tracking dropped %d values (%s); the experiment folder keeps them", op.values,
                              exc)
                    return
            elif kind == "metrics":
                self._queued += op.values
            self._ops.append(op)
            self._cond.notify_all()

    def close(self) -> None:
        """No more requests: the loop ends once the queue is sent (or ``give_up`` is set)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Give up what is not sent yet."""
        self.give_up.set()
        with self._cond:
            self._cond.notify_all()

    def left(self) -> tuple[int, int]:
        """(metric values, other requests) not sent."""
        with self._cond:
            ops = [*self._ops, *([self._current] if self._current is not None else [])]
            return sum(op.values for op in ops), sum(1 for op in ops if op.values == 0)

    def _spilled(self, op: _Op) -> _Op:
        """Metric values past what waits in memory: written to a temporary file, read back when their turn comes."""
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="mip-mlflow-")
        data = "".join(json.dumps(entry) + "\n" for entry in op.fields["entries"]).encode()
        os.pwrite(self._spill.fileno(), data, self._spill_end)
        spilled = _Op("spilled", {"offset": self._spill_end, "length": len(data)}, op.values)
        self._spill_end += len(data)
        return spilled

    def _take(self) -> _Op | None:
        """The next request: consecutive metric values go together, up to MLflow's limit per request; values wait
        up to :data:`LINGER_SECONDS` for more (unless another request waits behind them, or the queue closes)."""
        with self._cond:
            while not self._ops and not self._closing and not self.give_up.is_set():
                self._cond.wait()
            deadline = time.monotonic() + LINGER_SECONDS
            while self._lingering() and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            if self.give_up.is_set() or not self._ops:
                return None
            op = self._ops.popleft()
            if op.kind in ("metrics", "spilled"):
                entries = self._entries(op)
                while self._ops and self._ops[0].kind in ("metrics", "spilled") and (
                        len(entries) + self._ops[0].values <= METRICS_PER_REQUEST):
                    entries += self._entries(self._ops.popleft())
                op = _Op("metrics", {"entries": entries}, len(entries))
            self._current = op
            return op

    def _lingering(self) -> bool:
        """Whether the queue holds only metric values, fewer than one request takes, and more may come."""
        if self._closing or self.give_up.is_set() or not self._ops:
            return False
        if any(op.kind not in ("metrics", "spilled") for op in self._ops):
            return False
        return sum(op.values for op in self._ops) < METRICS_PER_REQUEST

    def _entries(self, op: _Op) -> list[MetricEntry]:
        if op.kind == "metrics":
            self._queued -= op.values
            return [MetricEntry(*entry) for entry in op.fields["entries"]]
        text = os.pread(self._spill.fileno(), op.fields["length"], op.fields["offset"]).decode()
        return [MetricEntry(*json.loads(line)) for line in text.splitlines()]

    # --- the sending loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Send every request until the queue is closed and empty, or given up."""
        while True:
            op = self._take()
            if op is None:
                return
            try:
                self._deliver(op)
            finally:
                with self._cond:
                    self._current = None

    def _deliver(self, op: _Op) -> None:
        """Send one request until MLflow takes it or refuses it, or the loop gives up."""
        delay = RETRY_FIRST_SECONDS
        while True:
            if self._broken is not None and op.kind != "open":
                self.refused += op.values
                return
            try:
                self._perform(op)
            except Exception as exc:
                if not _transient(exc):
                    self._refused(op, exc)
                    return
                self._unreachable(exc)
                if self.give_up.wait(delay):
                    self.unsent += op.values
                    return
                delay = min(2 * delay, RETRY_MAX_SECONDS)
                continue
            self._reachable()
            return

    def _perform(self, op: _Op) -> None:
        if op.kind == "open":
            self._open(op.fields)
            return
        from mlflow.entities import Metric, Param, RunTag

        client, fields = self._client, op.fields
        if op.kind == "params":
            params = self._new_params(fields["params"])
            if params:
                client.log_batch(self.run_id, params=[Param(key, value) for key, value in params.items()])
        elif op.kind == "metrics":
            client.log_batch(self.run_id, metrics=[Metric(e.key, e.value, e.timestamp, e.step)
                                                   for e in fields["entries"]])
        elif op.kind == "tags":
            tags = [RunTag(key, str(value)[:MAX_TAG_LENGTH]) for key, value in fields["tags"].items()]
            for start in range(0, len(tags), PARAMS_PER_REQUEST):
                client.log_batch(self.run_id, tags=tags[start:start + PARAMS_PER_REQUEST])
        elif op.kind == "artifact":
            path = Path(fields["path"])
            if path.is_dir():
                client.log_artifacts(self.run_id, str(path), fields.get("artifact_path"))
            elif path.is_file():
                client.log_artifact(self.run_id, str(path), fields.get("artifact_path"))
        elif op.kind == "sync":  # what a folder holds and the run lacks (a resumed run's earlier statistics)
            from miprometheus.workers.tracking.mlflow_folders import sync_run

            sync_run(client, self.run_id, Path(fields["folder"]), fields.get("until_episode"))
        elif op.kind == "tag_folder_run":  # the run another folder records here (a grid's experiment)
            from miprometheus.workers.tracking.mlflow_values import recorded_run

            run_id = recorded_run(Path(fields["folder"]), self.uri, self.experiment)
            if run_id is not None:
                client.log_batch(run_id, tags=[RunTag(key, str(value)[:MAX_TAG_LENGTH])
                                               for key, value in fields["tags"].items()])
        elif op.kind == "end":
            client.set_terminated(self.run_id, fields["status"], fields.get("end_time"))

    def _open(self, fields: dict[str, Any]) -> None:
        """Connect; continue the run given (marked running again on a resume, when ``reopen``), or create one and
        record its id in the folder."""
        self.settings = fields
        self.uri, self.experiment = fields["uri"], fields["experiment"]
        self.folder = Path(fields["folder"]) if fields.get("folder") else None
        if self._client is None:
            from mlflow.tracking import MlflowClient

            logging.getLogger("mlflow").setLevel(logging.WARNING)  # its own INFO lines (database set-up) are noise
            logging.getLogger("alembic").setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.uri)
        client = self._client
        run_id = fields.get("run_id")
        if run_id is not None:
            run = existing_run(client, run_id)
            if run is not None:
                if fields.get("reopen", True):
                    client.update_run(run_id, status="RUNNING")
                self.run_id, self._continued = run_id, True
                self.emit({"event": "run", "run_id": run_id})
                return
            self.warn("MLflow run %s (recorded in %s) is gone from %s: logging to a new run", run_id, self.folder,
                      self.uri)
        tags = {key: str(value)[:MAX_TAG_LENGTH] for key, value in (fields.get("tags") or {}).items()}
        if fields.get("parent_run_id"):
            tags[PARENT_TAG] = fields["parent_run_id"]
        run = client.create_run(experiment_id(client, self.uri, self.experiment), start_time=fields.get("start_time"),
                                tags=tags, run_name=fields.get("run_name"))
        self.run_id = run.info.run_id
        if self.folder is not None:
            try:
                record_run(self.folder, self.uri, self.experiment, self.run_id)
            except OSError as exc:
                self.warn("MLflow run %s could not be recorded in %s (%s): a resume logs to a new run", self.run_id,
                          self.folder, exc)
        self.emit({"event": "run", "run_id": self.run_id})

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
            self.warn("MLflow run %s keeps the first values of its parameters: %s changed since and stay%s as they "
                      "were there (the experiment folder's config has the new values)", self.run_id,
                      ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""), "s" if len(changed) == 1 else "")
        return {key: value for key, value in params.items() if key not in self._existing_params}

    # --- outages and refusals -----------------------------------------------------------------------------------
    def warn(self, message: str, *args: Any) -> None:
        self.emit({"event": "log", "level": "WARNING", "message": message % args if args else message})

    def _unreachable(self, exc: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self.warn("MLflow at %s does not answer (%s): training goes on; what it logs waits and is sent when "
                      "MLflow answers again", self.uri, _short(exc))

    def _reachable(self) -> None:
        if self._outage_since is not None:
            self.warn("MLflow at %s answers again after %.0f s: sending what waited", self.uri,
                      time.monotonic() - self._outage_since)
            self._outage_since = None

    def _refused(self, op: _Op, exc: BaseException) -> None:
        self.refused += op.values
        if op.kind == "open":  # no run: nothing else can be sent
            self._broken = _short(exc)
            self.warn("MLflow tracking is off for this run: %s refuses it (%s)", op.fields.get("uri"), self._broken)
            self.emit({"event": "run", "run_id": None})
            return
        self._refusals += 1
        if self._refusals <= REFUSALS_NAMED:
            self.warn("MLflow at %s refused %s of run %s (%s)%s", self.uri, op.kind, self.run_id, _short(exc),
                      "; further refusals are only counted" if self._refusals == REFUSALS_NAMED else "")


def _transient(exc: BaseException) -> bool:
    """Whether a failed request may succeed later (a server down, slow or busy; a database locked)."""
    if isinstance(exc, Refused | FileNotFoundError | ImportError):
        return False
    code = getattr(exc, "error_code", None)
    if isinstance(code, str):  # an MlflowException: a connection failure is INTERNAL_ERROR
        return code not in REFUSED_CODES
    return isinstance(exc, OSError | TimeoutError) or type(exc).__name__ == "OperationalError"


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name`` at ``uri``, made when missing (in a SQLite database, with its files
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
    """Where a new experiment in a SQLite database keeps its files: beside the database file (MLflow's default
    would be ./mlruns in whatever folder the run starts in). A server decides for itself (None)."""
    if uri.lower().startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            return (Path(path).resolve().parent / "mlartifacts").as_uri()
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


# ------------------------------------------------------------------------------------------------ the process


def _read_requests(log: RunLog, requests: TextIO) -> None:
    """Queue every request of the input; at ``close`` (or the input's end: the sender's process died) let the loop
    finish within the time given."""
    timeout = ORPHAN_SECONDS
    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        kind = request.pop("op", None)
        if kind == "close":
            timeout = float(request.get("timeout", ORPHAN_SECONDS))
            break
        if isinstance(kind, str):
            log.put(kind, request)
    log.close()
    timer = threading.Timer(timeout, log.stop)
    timer.daemon = True
    timer.start()


def main() -> None:
    """Run one RunLog: requests on stdin, events on stdout (print and MLflow's own output go to stderr)."""
    events = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            events.write(json.dumps(event) + "\n")

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        os.nice(NICENESS)
    except OSError:  # not allowed here: the same priority as the training
        pass
    log = RunLog(emit)
    reader = threading.Thread(target=_read_requests, args=(log, sys.stdin), daemon=True)
    reader.start()
    try:
        log.run()
    except Exception as exc:  # a fault of this process: the run it logs for goes on without it
        log.warn("MLflow tracking stopped: %s", _short(exc))
    values, others = log.left()
    if values or others or log.unsent:
        log.warn("MLflow at %s did not take everything in time (tracking.mlflow.flush_timeout): %d metric values and "
                 "%d other requests were not sent. The folder has them all: send them with "
                 "mip grid log-to-mlflow %s", log.uri, values + log.unsent, others, log.folder or "FOLDER")
    emit({"event": "closed", "unsent": values + log.unsent + log.refused, "run_id": log.run_id})
    events.close()
    os._exit(0)  # a request stuck in a daemon thread must not hold the process


if __name__ == "__main__":
    main()

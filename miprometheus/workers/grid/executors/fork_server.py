"""Warm start for the local executor: a server that has imported torch once forks each job's process.

A `mip` child spends seconds importing torch before its first step. The server (one process per
executor, started on its first job) imports torch and the training code, runs no torch op (no thread
pool, no CUDA), and for each request forks a child that becomes what a `python -m miprometheus ...`
child is: its own session, SIGTERM when its parent dies, Python's default signal dispositions, the
job's environment (``CUDA_VISIBLE_DEVICES`` before anything touches CUDA), working folder and log,
then ``cli.main(argv)`` and ``os._exit`` with its exit code.

Protocol: JSON lines. The executor writes requests (``argv``, ``cwd``, ``env``, ``log``) on the
server's stdin; the server answers on its stdout ``{"ready": pid}`` once, ``{"started": pid}`` or
``{"failed": why}`` per request in order, and ``{"exited": pid, "code": c}`` when it reaps a child
(``c`` as subprocess gives it: negative for a signal, so a SIGKILLed child is reported too). The
server ends when its stdin closes (the executor closed) or its parent dies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from miprometheus.workers.grid.executors.base import die_with_parent, has_death_signal

#: what the server imports before it is ready: what every `mip train` / `mip test` imports (a torch
#: optimizer imports torch._dynamo on its construction: over a second)
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "numpy", "miprometheus.cli", "miprometheus.workers.runs",
           "miprometheus.workers.trainer",
           "miprometheus.workers.setup", "miprometheus.workers.evaluation", "miprometheus.workers.callbacks",
           "miprometheus.models", "miprometheus.problems"]
REAP_SECONDS = 0.05  # how often the server reaps its children between requests


class ServerGone(RuntimeError):
    """The fork server could not start, or ended."""


class ForkServer:
    """The executor's side: starts the server, asks it for children, collects how they ended."""

    def __init__(self, ready_timeout: float = 120.0) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # its own session: a Ctrl-C at the terminal reaches the grid, which cancels the jobs, not the server
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=None, env=env, start_new_session=True,
                                        preexec_fn=die_with_parent if has_death_signal() else None)
        self.exits: dict[int, int] = {}
        self.answers: list[dict[str, Any]] = []
        self.buffer = b""
        self.gone = False
        answer = self._answer(ready_timeout)
        if "ready" not in answer:
            self.close()
            raise ServerGone(f"the warm-start server did not start: {answer}")

    def start(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float = 30.0) -> int:
        """Fork a child running ``mip argv``; its pid."""
        request = {"argv": argv, "cwd": str(cwd), "env": env, "log": str(log)}
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            self.gone = True
            raise ServerGone(f"the warm-start server ended ({error})") from error
        answer = self._answer(timeout)
        if "started" not in answer:
            raise ServerGone(f"the warm-start server could not start the job: {answer}")
        return int(answer["started"])

    def exit_code(self, pid: int) -> int | None:
        """How child ``pid`` exited, once the server reaped it; None while it runs (or when nobody knows)."""
        self._read(0)
        return self.exits.get(pid)

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.gone = True

    def _answer(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.answers:
            if self.gone:
                return {"failed": f"server ended (exit code {self.process.poll()})"}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"failed": f"no answer in {timeout:.0f} s"}
            self._read(left)
        return self.answers.pop(0)

    def _read(self, timeout: float) -> None:
        """Read what the server said within ``timeout`` seconds (0: only what is there)."""
        if self.gone or self.process.stdout is None:
            return
        fd = self.process.stdout.fileno()
        while select.select([fd], [], [], timeout)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                self.gone = True
                break
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "exited" in message:
                    self.exits[int(message["exited"])] = int(message["code"])
                else:
                    self.answers.append(message)
            timeout = 0


# --- the server ---------------------------------------------------------------------------------------
def serve() -> None:
    """The server's loop: fork a child per request, report its pid, reap children and report their exits."""
    replies = os.dup(1)
    os.dup2(2, 1)  # a stray print of an import must not corrupt the replies
    requests = 0
    server = os.getpid()
    if has_death_signal() and os.getppid() == 1:
        return  # the executor died before the death signal was set
    for module in PRELOAD:
        __import__(module)

    def send(message: dict[str, Any]) -> None:
        os.write(replies, json.dumps(message).encode() + b"\n")

    send({"ready": server})
    buffer = b""
    while True:
        if select.select([requests], [], [], REAP_SECONDS)[0]:
            chunk = os.read(requests, 65536)
            if not chunk:
                break  # the executor closed (its jobs already ended): children left get SIGTERM on our exit
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as error:
                    send({"failed": str(error)})
                    continue
                if pid == 0:
                    run_child(request, server, (requests, replies))
                send({"started": pid})
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def run_child(request: dict[str, Any], server: int, server_fds: tuple[int, ...]) -> None:
    """In a forked child: become the job's `python -m miprometheus ARGV` process; never returns."""
    code = 1
    try:
        os.setsid()
        if has_death_signal():
            die_with_parent()
            if os.getppid() != server:
                os._exit(1)  # the server died between fork and prctl
        # Python's start-up dispositions, whatever the server had: the Trainer installs its own handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_DFL)
        for fd in server_fds:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _reseed_after_fork()
        # The child runs the `mip` program as `python -m miprometheus` would (its __main__ raises SystemExit
        # with the exit code): the executor starts a program, it does not call into the CLI's functions.
        sys.argv = [str(Path(__file__).resolve().parents[3] / "__main__.py"), *request["argv"]]
        runpy.run_module("miprometheus", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_request:
        code = _exit_code(exit_request.code)
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()
        code = -int(signal.SIGINT)
    except BaseException:  # noqa: BLE001 - reported in the log like an uncaught exception of a fresh process
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        _exit(code)


def _reseed_after_fork() -> None:
    """Random states seeded when the server imported them would be the same in every child: reseed from the OS."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """Leave as a fresh interpreter would (atexit handlers, flushed streams), without unwinding into the server."""
    with contextlib.suppress(BaseException):
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads, as at interpreter exit
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if code < 0:  # died by a signal in a fresh process: do the same
        with contextlib.suppress(BaseException):
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    serve()

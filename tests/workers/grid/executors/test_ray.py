"""The Ray executor against a real two-node Ray cluster on loopback: shipping, both nodes, kills, cancel."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from miprometheus.errors import BadInputError
from miprometheus.workers.grid.executors.base import Executor, Job, JobResult
from miprometheus.workers.grid.executors.ray_executor import RayExecutor, pack_paths, unpack_archive
from miprometheus.workers.grid.spec import GridSettings
from tests.conftest import TINY_SERIAL, experiment_dirs, wait_job

ray = pytest.importorskip("ray")

LOOPBACK = "127.0.0.1"

# Ray rewrites the address 127.0.0.1 into this machine's network address (so that other machines can
# join), and then listens on every interface. Keeping 127.0.0.1 makes every Ray process listen on loopback
# only; the nodes' `ray start` and this test's driver both need it.
KEEP_LOOPBACK = "import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host"
RAY_CLI = KEEP_LOOPBACK + "; import sys; sys.argv[0] = 'ray'; from ray.scripts.scripts import main; main()"

OBJECT_STORE_BYTES = str(100 * 1024 * 1024)  # the default (30% of memory) is far more than these tests use


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def ray_processes(markers: list[str]) -> set[int]:
    """Processes of one test cluster: those whose command line names its temp folders or address, and their
    descendants (workers and agents rename themselves, but stay children of their raylet)."""
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie is already dead
            continue
        parents[int(entry)] = int(fields[1])
        if any(marker in command for marker in markers):
            found.add(int(entry))
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def stop_cluster(markers: list[str]) -> set[int]:
    """Stop one test cluster by process id (SIGTERM, then SIGKILL): never another Ray on this machine.

    (``ray stop --force`` would kill every Ray process of this user, a concurrent test's included.)
    """
    for signum, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in ray_processes(markers):
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and ray_processes(markers):
            time.sleep(0.2)
    return ray_processes(markers)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a second node joining it, 1 CPU each, all on 127.0.0.1; yields the GCS address."""
    root = Path(tempfile.mkdtemp(prefix="mipray"))  # short: Ray's unix sockets live under it (108-byte limit)
    port = free_port()
    address = f"{LOOPBACK}:{port}"
    markers = [str(root), address]
    # RAY_AUTH_MODE explicit: with a token in ~/.ray (left by any local ray.init) the head would require it
    # and the joining node would not send it. Every process listens on loopback only.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1")
    common = ["--node-ip-address", LOOPBACK, "--num-cpus", "1", "--disable-usage-stats",
              "--object-store-memory", OBJECT_STORE_BYTES, "--dashboard-agent-listen-port", str(free_port())]
    head = ["start", "--head", "--port", str(port), "--include-dashboard", "false",
            "--ray-client-server-port", str(free_port()), "--temp-dir", str(root / "head"), *common]
    # a second node on this host: its own temp folder (its sockets and session), its own agent port;
    # node manager, object manager and worker ports are picked free by Ray
    worker = ["start", "--address", address, "--temp-dir", str(root / "worker"), *common]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ray._private.services.resolve_ip_for_localhost", lambda host: host)
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("RAY_AUTH_MODE", "disabled")
        try:
            for args in (head, worker):
                started = subprocess.run([sys.executable, "-c", RAY_CLI, *args], env=env, capture_output=True,
                                         text=True, timeout=120)
                assert started.returncode == 0, f"ray {' '.join(args)}:\n{started.stdout}\n{started.stderr}"
            yield address
        finally:
            if ray.is_initialized():
                ray.shutdown()
            left = stop_cluster(markers)
            shutil.rmtree(root, ignore_errors=True)
            assert not left, f"Ray processes left running: {sorted(left)}"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """A grid folder holding the tiny experiment config."""
    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    return tmp_path


def settings(address: str, shared: bool = False) -> GridSettings:
    return GridSettings(executor="ray", ray_address=address, ray_shared_filesystem=shared)


def wait_for(executor: Executor, handle: object, timeout: float = 180) -> JobResult:
    return wait_job(executor, handle, timeout, interval=0.1)


def count_rows(path: Path) -> int:
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def running_child(pattern: str, timeout: float = 60) -> int:
    """The id of the one `mip` process whose command line matches ``pattern`` (the job's child on a worker)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if len(found) == 1:
            return int(found[0])
        assert len(found) < 2, f"several processes match {pattern!r}: {found}"
        time.sleep(0.05)
    raise AssertionError(f"no process matching {pattern!r} started")


def wait_rows(pid: int, expdir: str, rows: int, timeout: float = 60) -> None:
    """Wait until the child ``pid`` (running in its own folder on the worker) has written ``rows`` rows."""
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        folders = experiment_dirs(cwd / expdir)
        if folders and count_rows(folders[0] / "training_statistics.csv") >= rows:
            return
        time.sleep(0.01)
    raise AssertionError(f"{expdir} did not reach {rows} rows")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_training_runs_on_a_worker_and_its_results_come_back(cluster, grid):
    executor = RayExecutor(settings(cluster))
    try:
        job = Job(id="e1", args=["train", "tiny.yaml", "--expdir", "experiments/e1", "--no-progress"],
                  workdir=grid, inputs=["tiny.yaml"], outputs=["experiments/e1"], log="logs/e1.log", threads=1)
        result = wait_for(executor, executor.submit(job))
    finally:
        executor.close()
    assert result == JobResult(0, None), (grid / "logs" / "e1.log").read_text()
    [folder] = experiment_dirs(grid / "experiments" / "e1")
    assert count_rows(folder / "training_statistics.csv") == 60
    assert (folder / "models" / "model_best.pt").is_file()
    assert "training finished" in (grid / "logs" / "e1.log").read_text()
    assert not ray.is_initialized(), "close() disconnects the driver it connected"


@pytest.mark.slow
def test_b_two_jobs_at_once_use_both_nodes_with_a_shared_filesystem(cluster, grid):
    executor = RayExecutor(settings(cluster, shared=True))
    try:
        jobs = [Job(id=name, args=["train", "tiny.yaml", "--expdir", f"experiments/{name}", "--no-progress"],
                    workdir=grid, log=f"logs/{name}.log", threads=1) for name in ("a", "b")]
        handles = [executor.submit(job) for job in jobs]
        results = [wait_for(executor, handle) for handle in handles]
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    finally:
        executor.close()
    assert results == [JobResult(0, None)] * 2
    assert len(nodes) == 2
    # one CPU per node and per job: running at once, the two jobs had to go to different nodes
    assert {executor.nodes["a"], executor.nodes["b"]} == nodes
    for name in ("a", "b"):  # written in place, nothing shipped
        [folder] = experiment_dirs(grid / "experiments" / name)
        assert count_rows(folder / "training_statistics.csv") == 60


@pytest.mark.slow
def test_c_a_killed_experiment_is_a_failure_and_resumes_on_a_worker(cluster, grid):
    executor = RayExecutor(settings(cluster))
    limit = 1000
    try:
        job = Job(id="k", args=["train", "tiny.yaml", f"training.terminal_conditions.episode_limit={limit}",
                                "--expdir", "experiments/killed", "--no-progress"],
                  workdir=grid, inputs=["tiny.yaml"], outputs=["experiments/killed"], log="logs/k.log")
        handle = executor.submit(job)
        pid = running_child("miprometheus train.*experiments/killed")
        wait_rows(pid, "experiments/killed", 25)  # past the checkpoint written at the validation of episode 20
        os.kill(pid, signal.SIGKILL)
        killed = wait_for(executor, handle)
        # the task outlived its command: it reports the signal (a lost task or node would give None)
        assert killed.exit_code == -signal.SIGKILL and "killed by signal SIGKILL" in killed.error, killed

        [folder] = experiment_dirs(grid / "experiments" / "killed")  # shipped back: the retry can resume it
        before = count_rows(folder / "training_statistics.csv")
        assert 25 <= before < limit
        relative = folder.relative_to(grid).as_posix()
        retry = Job(id="k", args=["train", "--resume", relative, "--no-progress"], workdir=grid,
                    inputs=[relative], outputs=[relative], log="logs/k.log")
        resumed = wait_for(executor, executor.submit(retry))
    finally:
        executor.close()
    assert resumed == JobResult(0, None), (grid / "logs" / "k.log").read_text()
    assert count_rows(folder / "training_statistics.csv") == limit
    info = json.loads((folder / "run_info.json").read_text())
    assert info["status"] == "completed" and len(info["resumes"]) == 1
    assert experiment_dirs(grid / "experiments" / "killed") == [folder]


@pytest.mark.slow
def test_c_a_dead_ray_worker_is_a_lost_job_and_takes_its_command_along(cluster, grid):
    executor = RayExecutor(settings(cluster))
    scratch: Path | None = None
    try:
        job = Job(id="w", args=["train", "tiny.yaml", "training.terminal_conditions.episode_limit=1000000",
                                "--expdir", "experiments/orphan", "--no-progress"],
                  workdir=grid, inputs=["tiny.yaml"], outputs=["experiments/orphan"], log="logs/w.log")
        handle = executor.submit(job)
        pid = running_child("miprometheus train.*experiments/orphan")
        worker = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        scratch = Path(os.readlink(f"/proc/{pid}/cwd")).parent  # the dead task cannot remove it
        os.kill(worker, signal.SIGKILL)  # the Ray worker running the task dies, as with a crash or a lost node
        result = wait_for(executor, handle, timeout=60)
        deadline = time.time() + 30
        while alive(pid) and time.time() < deadline:  # the command got SIGTERM when its parent died
            time.sleep(0.1)
    finally:
        executor.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    assert result.exit_code is None and result.error, result  # the runner retries it
    assert not alive(pid)
    assert "Ray task lost" in (grid / "logs" / "w.log").read_text()


@pytest.mark.slow
def test_d_cancel_terminates_a_running_job(cluster, grid):
    executor = RayExecutor(settings(cluster), cancel_grace_s=20)
    try:
        job = Job(id="c", args=["train", "tiny.yaml", "training.terminal_conditions.episode_limit=1000000",
                                "--expdir", "experiments/cancelled", "--no-progress"],
                  workdir=grid, inputs=["tiny.yaml"], outputs=["experiments/cancelled"], log="logs/c.log")
        handle = executor.submit(job)
        pid = running_child("miprometheus train.*experiments/cancelled")
        wait_rows(pid, "experiments/cancelled", 1)
        started = time.time()
        executor.cancel(handle)
        # cancel returns once the job ended: within the 20-s grace, plus the kill and the Ray calls, which took
        # up to 35 s when the 2 cores ran 5 other processes; a hung cancel would exceed any bound.
        assert time.time() - started < 60
        assert not alive(pid)
        result = wait_for(executor, handle, timeout=90)  # a loaded machine: the last checkpoint takes a while
    finally:
        executor.close()
    # stopped by SIGTERM, the trainer wrote its last checkpoint and exited 130; the folder came back
    assert result.exit_code == 130 and "stopped (cancel)" in result.error, result
    [folder] = experiment_dirs(grid / "experiments" / "cancelled")
    assert (folder / "models" / "model_last.pt").is_file()


def test_e_a_bad_address_or_a_missing_ray_is_bad_input(monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(BadInputError, match="cannot reach the Ray cluster"):
        RayExecutor(settings(f"{LOOPBACK}:{free_port()}"))
    with pytest.raises(BadInputError, match="host:port"):
        RayExecutor(settings("no-port-here"))
    assert not ray.is_initialized()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BadInputError, match=r"pip install miprometheus\[ray\]"):
        RayExecutor(settings(f"{LOOPBACK}:1"))


def test_archives_merge_into_folders_and_refuse_escaping_members(tmp_path):
    source = tmp_path / "src"
    (source / "exp" / "models").mkdir(parents=True)
    (source / "exp" / "new.txt").write_text("new")
    (source / "exp" / "models" / "m.pt").write_bytes(b"\0\1")
    (source / "exp" / "link").symlink_to("/etc/passwd")
    data = pack_paths(source, ["exp", "missing.yaml"])
    target = tmp_path / "dst"
    (target / "exp").mkdir(parents=True)
    (target / "exp" / "old.txt").write_text("old")
    (target / "exp" / "new.txt").write_text("stale")
    unpack_archive(data, target)
    assert (target / "exp" / "old.txt").read_text() == "old"  # merged, not replaced
    assert (target / "exp" / "new.txt").read_text() == "new"
    assert (target / "exp" / "models" / "m.pt").read_bytes() == b"\0\1"
    assert not (target / "exp" / "link").exists()  # links do not travel

    with pytest.raises(BadInputError):
        pack_paths(source, ["../outside"])
    for name, kind in (("../evil.txt", tarfile.REGTYPE), ("/tmp/evil.txt", tarfile.REGTYPE),
                       ("a/../../evil.txt", tarfile.REGTYPE), ("evil-link", tarfile.SYMTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            archive.addfile(info, io.BytesIO(b""))
        with pytest.raises(BadInputError, match="unsafe"):
            unpack_archive(buffer.getvalue(), tmp_path / "victim")
        assert not any((tmp_path / "victim").rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.slow
def test_f_without_an_address_a_local_ray_is_started_and_shut_down(grid, monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    # this test's Ray listens on 127.0.0.1 only (Ray would use this machine's network address otherwise)
    monkeypatch.setattr("ray._private.ray_constants.ENABLE_RAY_CLUSTER", False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # else Ray writes a token into ~/.ray
    temp = Path(tempfile.mkdtemp(prefix="mipray"))  # the session's logs and sockets, not /tmp/ray
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    try:
        executor = RayExecutor(settings(None))
        try:
            assert executor.owns_ray and ray.is_initialized()
            job = Job(id="bad", args=["train", "missing.yaml", "--no-progress"], workdir=grid, log="logs/bad.log")
            result = wait_for(executor, executor.submit(job))
        finally:
            executor.close()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert not ray.is_initialized()
    assert result.exit_code == 2 and "missing.yaml" in result.error, result


GRID = """
grid_tasks:
  - {{name: serial, default_configs: tiny.yaml}}
  - {{name: reverse, default_configs: tiny.yaml, overwrite: {{training.problem.name: ReverseRecall,
      validation.problem.name: ReverseRecall, testing.problem.name: ReverseRecall}}}}
grid_overwrite: {{training: {{seed: -1, terminal_conditions: {{episode_limit: 40}}}}}}
grid_settings:
  experiment_repetitions: 2
  max_concurrent_runs: 2
  cpus_per_experiment: 1
  seed: 5
  executor: {executor}
  ray_address: {address}
"""

VARYING = {"folder", "wall_time_s"}


@pytest.mark.slow
def test_a_grid_on_ray_gives_the_same_analysis_as_locally(cluster, tmp_path):
    from miprometheus.statistics import read_csv
    from miprometheus.workers.grid.analysis import analyze
    from miprometheus.workers.grid.runner import test_grid, train_grid

    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    tables = {}
    for executor in ("local", "ray"):
        path = tmp_path / f"grid_{executor}.yaml"
        path.write_text(GRID.format(executor=executor, address=cluster if executor == "ray" else "null"))
        manifest = train_grid(path, [], tmp_path / executor, progress=False)
        assert manifest.counts() == {"done": 4}, [(r.id, r.last_error) for r in manifest.records]
        assert test_grid(manifest.folder, progress=False).counts("test_status") == {"done": 4}
        analyze(manifest.folder, console=False)
        tables[executor] = [{k: v for k, v in row.items() if k not in VARYING}
                            for row in read_csv(manifest.folder / "grid_analysis.csv")]
    assert tables["ray"] == tables["local"]
    assert all(row["status"] == "done" and row["test_acc"] for row in tables["ray"])


SEARCH_GRID = """
grid_tasks:
  - {{name: lstm, default_configs: tiny.yaml}}
  - {{name: gru, default_configs: tiny.yaml, overwrite: {{model.name: GRU}}}}
grid_overwrite: {{training: {{seed: -1, terminal_conditions: {{episode_limit: 40}}}}}}
grid_settings:
  max_concurrent_runs: 1
  cpus_per_experiment: 1
  seed: 5
  executor: {executor}
  ray_address: {address}
  search:
    space:
      training.optimizer.lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}
      model.hidden_size: {{choices: [8, 16]}}
    trials: 3
    reevaluate: {{top: 1, seeds: 1}}
"""


@pytest.mark.slow
def test_the_same_search_on_ray_as_locally(cluster, tmp_path):
    """A search on the loopback Ray cluster: the grid process owns the studies, the trials run on Ray's workers;
    one trial at a time, it proposes what the local search proposes, and re-evaluates and tests the same."""
    from miprometheus.workers.grid.manifest import REEVALUATION, SEARCH
    from miprometheus.workers.grid.runner import test_grid, train_grid

    (tmp_path / "tiny.yaml").write_text(TINY_SERIAL)
    found = {}
    for executor in ("local", "ray"):
        path = tmp_path / f"search_{executor}.yaml"
        path.write_text(SEARCH_GRID.format(executor=executor, address=cluster if executor == "ray" else "null"))
        manifest = train_grid(path, [], tmp_path / executor, progress=False)
        assert manifest.counts() == {"done": 8}, [(r.id, r.last_error) for r in manifest.records]
        tested = test_grid(manifest.folder, progress=False)
        assert [r.test_status for r in tested.records if r.phase == REEVALUATION] == ["done", "done"]
        found[executor] = sorted((r.phase, r.task, r.trial, str(r.params)) for r in manifest.records
                                 if r.phase in (SEARCH, REEVALUATION))
    assert found["ray"] == found["local"]

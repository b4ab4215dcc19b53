"""Hostile input and faults in experiment folders: damaged files, altered checkpoints, a full disk, signals
while the folder is made, non-finite weights, leftovers of kills, two processes on one folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from miprometheus.checkpoint import content_checksum, load_checkpoint
from miprometheus.cli import main
from miprometheus.errors import BadInputError, CheckpointError
from miprometheus.locks import FolderLock
from tests.conftest import TINY_SERIAL, experiment_dirs

SHORT = TINY_SERIAL.replace("episode_limit: 60", "episode_limit: 12").replace("interval: 20", "interval: 6")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 12-episode LSTM/SerialRecall experiment, copied by each test that damages it."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(SHORT)
    assert main(["train", str(root / "tiny.yaml"), "--expdir", str(root / "experiments")]) == 0
    return experiment_dirs(root / "experiments")[0]


@pytest.fixture
def folder(trained, tmp_path) -> Path:
    copy = tmp_path / "experiment"
    shutil.copytree(trained, copy)
    return copy


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def rewrite_checkpoint(path: Path, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def forge(entry):
    """A forged checkpoint: its ``model`` replaced, a checksum that matches (a careful forger)."""
    def change(payload):
        payload["model"] = entry
        payload["checksum"] = content_checksum(payload)
    return change


def flip_a_bit_in_a_tensor(path: Path) -> None:
    import struct
    import zipfile

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    data[entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGES = {
    "zero-byte model_last": ("train", lambda f: (f / "models/model_last.pt").write_bytes(b""),
                             "model_last.pt is empty"),
    "zero-byte model_best": ("test", lambda f: (f / "models/model_best.pt").write_bytes(b""), "model_best.pt is empty"),
    "run_info is a list": ("train", lambda f: (f / "run_info.json").write_text("[]"), "run_info.json is damaged"),
    "run_info is not JSON": ("train", lambda f: (f / "run_info.json").write_text("{broken"),
                             "run_info.json is damaged"),
    "run_info is not JSON, test": ("test", lambda f: (f / "run_info.json").write_text("{broken"),
                                   "run_info.json is damaged"),
    "garbage statistics row": ("train", lambda f: (f / "training_statistics.csv").write_text(
        (f / "training_statistics.csv").read_text().replace("\n2,", "\ngarbage,", 1)),
        "training_statistics.csv is damaged at line 3"),
    "forged model entry (str)": ("train", lambda f: rewrite_checkpoint(f / "models/model_last.pt", forge("x")),
                                 "'model' entry is a str"),
    "forged model entry (list)": ("test", lambda f: rewrite_checkpoint(f / "models/model_best.pt", forge([1, 2])),
                                  "'model' entry is a list"),
    "altered model entry": ("test", lambda f: rewrite_checkpoint(f / "models/model_best.pt",
                                                               lambda p: p.update(model={})),
                            "does not match its checksum"),
    "a bit flipped in the weights": ("train", lambda f: flip_a_bit_in_a_tensor(f / "models/model_last.pt"),
                                     "model_last.pt is corrupt: its content does not match its checksum"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_folder_is_refused_and_left_as_it_was(folder, case, capsys):
    # before: internal errors (exit 1), a garbage row resumed (rewriting run_info.json first), a bit flip trained on
    command, damage, message = DAMAGES[case]
    damage(folder)
    before = snapshot(folder)
    args = ["train", "--resume", str(folder), "training.terminal_conditions.episode_limit=14"] if command == "train" \
        else ["test", str(folder)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert message in error and str(folder) in error, error
    assert snapshot(folder) == before


def test_a_zero_byte_model_file_is_refused(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(SHORT)
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["test", str(tmp_path / "tiny.yaml"), "--model", str(tmp_path / "empty.pt"),
                 "--expdir", str(tmp_path / "out")]) == 2
    assert "empty.pt is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_checkpoints_carry_a_checksum_verified_on_load(folder):
    last = folder / "models" / "model_last.pt"
    payload = load_checkpoint(last)
    assert payload["checksum"].startswith("sha256:") and payload["version"] == 2
    # a checkpoint written before checksums (format version 1) still loads
    rewrite_checkpoint(last, lambda p: (p.pop("checksum"), p.update(version=1)))
    assert "checksum" not in load_checkpoint(last)
    rewrite_checkpoint(last, lambda p: p.update(version=2))
    with pytest.raises(CheckpointError, match="carries a checksum, this file has none"):
        load_checkpoint(last)


def test_init_from_verifies_the_checksum(folder, tmp_path, capsys):
    flip_a_bit_in_a_tensor(folder / "models" / "model_best.pt")
    (tmp_path / "tiny.yaml").write_text(SHORT)
    assert main(["train", str(tmp_path / "tiny.yaml"), f"model.init_from={folder}",
                 "--expdir", str(tmp_path / "out")]) == 2
    assert "does not match its checksum" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


FSIZE_RUN = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from miprometheus.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_with_file_size_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", FSIZE_RUN.format(limit=limit), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_file_size_limit_ends_the_run_naming_the_file(tmp_path):
    # before: "internal error" (exit 1) with a RuntimeError of torch's zip writer
    (tmp_path / "tiny.yaml").write_text(SHORT)
    result = run_with_file_size_limit(8_000, "train", tmp_path / "tiny.yaml", "--expdir", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the run failed: file size limit exceeded writing" in last and "model_last.pt" in last, last
    assert "the new experiment folder was removed" in last
    assert "internal error" not in result.stderr
    assert not list((tmp_path / "out").rglob("*.yaml")), "a folder that cannot be resumed was left"


def test_a_file_size_limit_during_training_keeps_whole_rows_and_the_checkpoint(tmp_path):
    # the start checkpoint fits; a later, larger one (Adam's state) or the growing CSV does not
    long = SHORT.replace("episode_limit: 12", "episode_limit: 3000").replace("interval: 6", "interval: 1000")
    (tmp_path / "tiny.yaml").write_text(long.replace("hidden_size: 16", "hidden_size: 4"))
    result = run_with_file_size_limit(32_000, "train", tmp_path / "tiny.yaml", "--expdir", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the run failed: file size limit exceeded writing" in last, last
    assert last.endswith(("model_last.pt", "training_statistics.csv")) and "removed" not in last, last
    assert "Logging error" not in result.stderr
    [folder] = experiment_dirs(tmp_path / "out")
    text = (folder / "training_statistics.csv").read_text()
    assert text.endswith("\n") and len({len(line.split(",")) for line in text.splitlines()}) == 1
    assert load_checkpoint(folder / "models" / "model_last.pt")["trainer"]["episode"] >= 0
    assert json.loads((folder / "run_info.json").read_text())["status"] == "failed"


def test_a_failed_statistics_write_leaves_no_torn_row(tmp_path):
    script = textwrap.dedent("""
        import resource, signal, sys
        from pathlib import Path
        from miprometheus.statistics import CSVWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        writer = CSVWriter(Path(sys.argv[1]), ["episode", "loss", "time"])
        try:
            for episode in range(1, 1000):
                writer.write_rows([{"episode": e, "loss": 0.123456789 * e, "time": 1.5} for e in (episode,)])
        except Exception as exc:
            print(type(exc).__name__, exc)
        """)
    path = tmp_path / "training_statistics.csv"
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("WriteFailed the run failed: file size limit exceeded writing"), result
    text = path.read_text()
    assert text.endswith("\n") and all(len(line.split(",")) == 3 for line in text.splitlines())


def test_a_torn_last_row_is_repaired_on_resume(folder):
    csv = folder / "training_statistics.csv"
    csv.write_text(csv.read_text() + "13,1,0.5")  # a kill in the middle of a write
    assert main(["train", "--resume", str(folder), "training.terminal_conditions.episode_limit=14"]) == 0
    episodes = [line.split(",")[0] for line in csv.read_text().splitlines()[1:]]
    assert episodes == [str(e) for e in range(1, 15)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_folder_is_made_leaves_no_folder(tmp_path, monkeypatch, signum):
    # before: a folder without its config, which --resume calls "not an experiment folder"
    from miprometheus.workers.trainer import Trainer

    if signal.getsignal(signum) is signal.SIG_IGN:  # a shell starts background jobs with SIGINT ignored
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this process (started in the background)")
    monkeypatch.setattr(Trainer, "save_start_checkpoint", lambda self: os.kill(os.getpid(), signum))
    (tmp_path / "tiny.yaml").write_text(SHORT)
    assert main(["train", str(tmp_path / "tiny.yaml"), "--expdir", str(tmp_path / "out")]) == 130
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_dir() and p.parent.name == "LSTM"] == []


def test_a_new_folder_can_be_resumed_from_its_first_instant(tmp_path, monkeypatch):
    from miprometheus.workers.trainer import Trainer

    def killed(self):
        raise SystemExit(137)  # as if killed -9 once the folder has its name, before the first episode

    (tmp_path / "tiny.yaml").write_text(SHORT)
    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "fit", killed)
        with pytest.raises(SystemExit):
            main(["train", str(tmp_path / "tiny.yaml"), "--expdir", str(tmp_path / "out")])
    [folder] = experiment_dirs(tmp_path / "out")
    assert load_checkpoint(folder / "models" / "model_last.pt")["trainer"]["episode"] == 0
    assert main(["train", "--resume", str(folder)]) == 0
    assert json.loads((folder / "run_info.json").read_text())["episodes"] == 12


def train_with_learning_rate(tmp_path: Path, lr: float) -> tuple[object, Path]:
    """Train SHORT with ``lr`` set on the optimizer itself (the config's bounds may refuse such a value; the
    trainer must be robust anyway), a checkpoint asked for after every episode."""
    from miprometheus.config import load_config
    from miprometheus.config.experiment_spec import validate
    from miprometheus.workers import callbacks as cb
    from miprometheus.workers.run_folder import ExperimentFolder, RunOptions
    from miprometheus.workers.trainer import Trainer

    (tmp_path / "tiny.yaml").write_text(SHORT)
    spec = validate(load_config([tmp_path / "tiny.yaml"], ["training.checkpoint_interval=1"]))
    options = RunOptions(expdir=tmp_path / "out", progress=False, command_line=["test"])
    trainer = Trainer(spec, seed=1, callbacks=cb.default_callbacks(spec, options))
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    folder = tmp_path / "experiment"
    folder.mkdir()
    experiment = ExperimentFolder(folder, options)
    trainer.attach(experiment)
    trainer.fit()
    experiment.close()
    return trainer, folder


def assert_finite_checkpoints(folder: Path) -> None:
    for name in ("model_last.pt", "model_best.pt"):
        if (folder / "models" / name).exists():
            weights = load_checkpoint(folder / "models" / name)["model"]
            assert all(torch.isfinite(t).all() for t in weights.values()), name


def test_infinite_learning_rate_never_saves_non_finite_weights(tmp_path):
    # before: model_last.pt held inf/NaN weights
    trainer, folder = train_with_learning_rate(tmp_path, float("inf"))
    assert trainer.stop_cause == "nan"
    assert_finite_checkpoints(folder)


def test_an_overflowing_learning_rate_ends_as_a_failed_run(tmp_path):
    # before: RuntimeError "value cannot be converted to type float without overflow" (mip: internal error)
    trainer, folder = train_with_learning_rate(tmp_path, 1e38)
    assert trainer.stop_cause == "nan" and "overflow" in trainer.stop_reason
    assert_finite_checkpoints(folder)


def test_an_overflowing_learning_rate_is_exit_1_from_the_command(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(SHORT)
    code = main(["train", str(tmp_path / "tiny.yaml"), "--expdir", str(tmp_path / "out"), "training.optimizer.lr=1e38"])
    error = capsys.readouterr().err
    if code == 2 and "training.optimizer.lr" in error:
        pytest.skip("the config's bounds refuse lr 1e38 up front")
    assert code == 1 and "internal error" not in error and "overflow" in error, error


def test_resume_removes_temporary_files_left_by_kills(folder):
    left = [folder / "models" / ".model_last.pt.tmp-4242-4242", folder / ".run_info.json.tmp-4242-1",
            folder / "models" / ".model_best.pt.k2j3h4g5.tmp"]
    for path in left:
        path.write_bytes(b"partial")
    assert main(["train", "--resume", str(folder), "training.terminal_conditions.episode_limit=14"]) == 0
    assert not any(path.exists() for path in left)


def test_a_second_process_on_a_folder_is_refused_naming_the_holder(folder, capsys):
    # before: both ran, interleaving their statistics rows
    with FolderLock(folder, "training"):
        before = snapshot(folder)
        assert main(["train", "--resume", str(folder), "training.terminal_conditions.episode_limit=14"]) == 2
        assert main(["test", str(folder)]) == 0  # a test reads saved files only: allowed
    error = capsys.readouterr().err
    assert f"pid {os.getpid()}" in error and "in use by another process" in error
    assert {k: v for k, v in snapshot(folder).items() if not k.startswith("test_")} == before


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from miprometheus.locks import FolderLock\n"
                               "FolderLock(Path(sys.argv[1]), 'training').acquire(); print('held', flush=True)\n"
                               "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BadInputError, match=f"pid {holder.pid}"):
        FolderLock(tmp_path, "training").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    FolderLock(tmp_path, "training").acquire().release()

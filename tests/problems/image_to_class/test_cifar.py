"""Tests of CIFAR-10 / CIFAR-100: the official format (writer and safe reader), the problems, downloads, bad files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from miprometheus.cli import main
from miprometheus.errors import ConfigError, DataError
from miprometheus.problems.image_to_class import cifar
from miprometheus.problems.image_to_class import cifar_format as cf
from miprometheus.problems.image_to_class.cifar import CIFAR10, CIFAR100
from miprometheus.registry import get_problem
from tests.conftest import experiment_dirs, run_mip

FINE = [f"fine_{i}" for i in range(100)]
COARSE = [f"coarse_{i}" for i in range(20)]


def pixels(count: int, seed: int) -> np.ndarray:
    """uint8 [N, 3, 32, 32], including 0 and 255."""
    images = np.random.default_rng(seed).integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 2, 31, 31] = 0, 255
    return images


TRAIN, TEST = pixels(12, 0), pixels(4, 1)
TRAIN_LABELS, TEST_LABELS = [(3 * i + 1) % 10 for i in range(12)], [9, 0, 5, 2]


def write10(root: Path, *, archive: bool = True, folder: bool = False) -> Path:
    cf.write_cifar10(root, TRAIN, TRAIN_LABELS, TEST, TEST_LABELS, archive=archive, keep_folder=folder)
    return root


def load(root: Path, cls: type = CIFAR10, **overrides) -> CIFAR10:
    values = {"batch_size": 4, "data_folder": str(root), "download": False}
    values.update(overrides)
    return cls(cls.Params(**values))


def whole(problem: CIFAR10) -> dict:
    return problem.collate_fn([problem[i] for i in range(len(problem))])


class Boom:
    """Unpickling this runs ``os.system``: the safe reader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- the official format ------------------------------------------------------------------------------
def test_writer_files_load_with_plain_pickle_as_str_or_bytes_keys(tmp_path):
    write10(tmp_path, archive=False, folder=True)
    raw = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as cPickle wrote the official files
    as_str = pickle.loads(raw, encoding="latin1")
    as_bytes = pickle.loads(raw, encoding="bytes")
    assert set(as_str) == {"batch_label", "labels", "data", "filenames"}
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert as_str["data"].dtype == np.uint8 and np.array_equal(as_str["data"], as_bytes[b"data"])
    assert np.array_equal(as_str["data"].reshape(-1, 3, 32, 32), TRAIN[: as_str["data"].shape[0]])
    meta = pickle.loads((tmp_path / "cifar-10-batches-py" / "batches.meta").read_bytes(), encoding="latin1")
    assert meta["label_names"] == list(cf.CIFAR10_LABEL_NAMES) and meta["num_vis"] == 3072


@pytest.mark.parametrize("layout", ["archive", "folder"])
def test_batches_hold_the_file_pixels_over_255(tmp_path, layout):
    write10(tmp_path, archive=layout == "archive", folder=layout == "folder")
    assert (tmp_path / "cifar-10-batches-py").is_dir() == (layout == "folder")
    train = load(tmp_path)
    assert len(train) == 12 and train.images.dtype == torch.uint8 and train.images.shape == (12, 3, 32, 32)
    batch = whole(train)
    assert batch["images"].dtype == torch.float32 and batch["images"].shape == (12, 3, 32, 32)
    assert torch.equal(batch["images"], torch.from_numpy(TRAIN).float() / 255)
    assert batch["targets"].dtype == torch.int64 and batch["targets"].tolist() == TRAIN_LABELS
    assert batch["targets_label"][:2] == ["automobile", "deer"]  # names from batches.meta
    assert train.default_values == {"num_classes": 10, "num_channels": 3, "height": 32, "width": 32}
    test = load(tmp_path, use_train_data=False)
    assert whole(test)["targets"].tolist() == TEST_LABELS
    assert torch.equal(whole(test)["images"], torch.from_numpy(TEST).float() / 255)


def test_normalize_and_resize(tmp_path):
    write10(tmp_path)
    plain = whole(load(tmp_path))["images"]
    normalised = whole(load(tmp_path, normalize=True))["images"]
    mean = torch.tensor(CIFAR10.published_mean).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10.published_std).view(1, 3, 1, 1)
    assert torch.allclose(normalised, (plain - mean) / std, atol=1e-6)
    own = whole(load(tmp_path, normalize=True, mean=[0.5, 0.5, 0.5], std=0.25))["images"]
    assert torch.allclose(own, (plain - 0.5) / 0.25, atol=1e-6)
    resized = load(tmp_path, resize=[64, 48])
    assert resized.images.shape == (12, 3, 32, 32)  # uint8 as in the file; resized per batch
    assert whole(resized)["images"].shape == (12, 3, 64, 48)
    assert resized.default_values["height"] == 64 and resized.output_definitions["images"].shape == (-1, 3, 64, 48)
    with pytest.raises(ConfigError, match="mean"):
        load(tmp_path, normalize=True, mean=[0.5, 0.5])
    with pytest.raises(ConfigError, match="grey_to_rgb"):
        load(tmp_path, grey_to_rgb=True)


def test_splits_share_one_copy_of_the_pixels(tmp_path):
    write10(tmp_path)
    first, second = load(tmp_path), load(tmp_path, batch_size=2)
    assert first.images is second.images


@pytest.mark.parametrize("label_type, expected", [("fine", [5, 7, 9, 11]), ("coarse", [1, 2, 3, 4])])
def test_cifar100_fine_and_coarse(tmp_path, label_type, expected):
    cf.write_cifar100(tmp_path, TRAIN, list(range(12)), [i % 20 for i in range(12)], TEST, [5, 7, 9, 11],
                      [1, 2, 3, 4], fine_label_names=FINE, coarse_label_names=COARSE, archive=True,
                      keep_folder=False)
    problem = load(tmp_path, CIFAR100, use_train_data=False, label_type=label_type)
    batch = whole(problem)
    assert batch["targets"].tolist() == expected
    assert batch["targets_label"][0] == f"{label_type}_{expected[0]}"
    assert problem.default_values["num_classes"] == (100 if label_type == "fine" else 20)
    assert torch.equal(batch["images"], torch.from_numpy(TEST).float() / 255)


def test_registry_and_mip_list_show_the_docs(capsys):
    assert get_problem("CIFAR10") is CIFAR10 and get_problem("CIFAR100") is CIFAR100
    assert main(["list", "problems", "CIFAR10"]) == 0
    out = capsys.readouterr().out
    assert "batches.meta" in out and "random_crop_padding" in out and "data_folder" in out


# --- safety and bad files -----------------------------------------------------------------------------
def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": Boom(marker)}, protocol=2)
    with pytest.raises(DataError, match=r"system.*refused"):
        cf.safe_loads(payload, "evil_file")
    write10(tmp_path / "data", archive=False, folder=True)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match=r"data_batch_3.*system"):
        load(tmp_path / "data")
    assert not marker.exists()
    # Plain pickle would have run it: the test above proves something.
    pickle.loads(payload)
    assert marker.exists()


def rewrite_batch(root: Path, name: str, change) -> None:
    path = root / "cifar-10-batches-py" / name
    record = pickle.loads(path.read_bytes(), encoding="latin1")
    change(record)
    path.write_bytes(cf.py2_pickle_bytes(record))


@pytest.mark.parametrize("change, cause", [
    (lambda r: r.update(data=r["data"][:, :3000]), "shape"),
    (lambda r: r.update(data=r["data"].astype(np.int16)), "uint8"),
    (lambda r: r["labels"].__setitem__(0, 10), "label 10, out of range"),
    (lambda r: r.update(labels=r["labels"][:-1]), "labels"),
    (lambda r: r.pop("data"), "no 'data'"),
])
def test_malformed_batches_are_data_errors_naming_the_file(tmp_path, change, cause):
    write10(tmp_path, archive=False, folder=True)
    rewrite_batch(tmp_path, "data_batch_2", change)
    with pytest.raises(DataError, match=cause) as error:
        load(tmp_path)
    assert "data_batch_2" in str(error.value)


def test_truncated_pickle_is_a_data_error(tmp_path):
    write10(tmp_path, archive=False, folder=True)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"test_batch.*truncated"):
        load(tmp_path, use_train_data=False)


def test_truncated_and_corrupt_archives_are_data_errors(tmp_path):
    write10(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz") as error:
        load(tmp_path)
    assert "truncated" in str(error.value) or "does not hold" in str(error.value)
    archive.write_bytes(data[:100] + bytes(b ^ 0x5A for b in data[100:400]) + data[400:])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz"):
        load(tmp_path)
    archive.write_bytes(b"not a gzip file at all")
    with pytest.raises(DataError, match=r"cannot read the CIFAR archive .*cifar-10-python.tar.gz"):
        load(tmp_path)


def test_archive_without_a_member_names_it(tmp_path):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="data_batch_1"):
        load(tmp_path)


@pytest.mark.slow
def test_cli_refuses_a_bad_file_with_exit_2_before_creating_the_experiment(tmp_path):
    write10(tmp_path / "data", archive=False, folder=True)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x02}q\x00(U\x04data")
    config = tmp_path / "bad.yaml"
    config.write_text(f"""
training:
  problem: {{name: CIFAR10, data_folder: {tmp_path / 'data'}, batch_size: 4, download: false}}
  optimizer: {{name: SGD, lr: 0.01}}
  terminal_conditions: {{episode_limit: 2}}
model: {{name: LeNet5}}
""")
    result = run_mip("train", config, "--expdir", tmp_path / "exp")
    assert result.returncode == 2, result.stderr
    assert "data_batch_1" in result.stderr and "truncated" in result.stderr
    assert experiment_dirs(tmp_path / "exp") == []
    assert run_mip("check", config).returncode == 2


# --- downloads ------------------------------------------------------------------------------------------
def fake_distribution(monkeypatch, payload: bytes) -> list[str]:
    fetched: list[str] = []

    def fake_fetch(url: str) -> bytes:
        fetched.append(url)
        return payload

    monkeypatch.setattr(cifar, "fetch", fake_fetch)
    return fetched


def test_download_checks_the_md5_and_writes_the_archive(tmp_path, monkeypatch):
    write10(tmp_path / "source")
    payload = (tmp_path / "source" / "cifar-10-python.tar.gz").read_bytes()
    fetched = fake_distribution(monkeypatch, payload)
    with pytest.raises(DataError, match="md5"):
        load(tmp_path / "data", download=True)  # the official md5 is not our fixture's
    assert not (tmp_path / "data" / "cifar-10-python.tar.gz").exists()
    assert fetched == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    own = dataclasses.replace(cifar.CIFAR10_FILES, md5=hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(CIFAR10, "distribution", own)
    problem = load(tmp_path / "data", download=True)
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").read_bytes() == payload and len(problem) == 12
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-python.tar.gz"]  # no temporary left


def test_offline_or_disabled_download_says_which_file_to_place_where(tmp_path, monkeypatch):
    def offline(url: str) -> bytes:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(cifar, "fetch", offline)
    with pytest.raises(DataError, match="Network is unreachable") as error:
        load(tmp_path, download=True)
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(error.value)
    with pytest.raises(DataError, match=r"download: false.*cifar-10-python.tar.gz"):
        load(tmp_path)


def test_the_official_checksums():
    assert cifar.CIFAR10_FILES.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100_FILES.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


# --- augmentation -----------------------------------------------------------------------------------------
def augmented(root: Path, seed: int, **overrides) -> list[torch.Tensor]:
    problem = load(root, random_crop_padding=4, random_horizontal_flip=True, **overrides)
    problem.seed(seed)
    return [whole(problem)["images"] for _ in range(3)]


def test_augmentation_is_drawn_from_the_problem_generator(tmp_path):
    write10(tmp_path)
    first, again, other = augmented(tmp_path, 5), augmented(tmp_path, 5), augmented(tmp_path, 6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert not torch.equal(first[0], first[1])  # each batch draws anew
    plain = whole(load(tmp_path))["images"]
    assert first[0].shape == plain.shape
    assert not torch.equal(first[0], plain)
    # A state saved mid-way restores the same draws (what a resumed run relies on).
    problem = load(tmp_path, random_crop_padding=4, random_horizontal_flip=True)
    problem.seed(5)
    whole(problem)
    state = problem.state_dict()
    expected = whole(problem)["images"]
    restored = load(tmp_path, random_crop_padding=4, random_horizontal_flip=True)
    restored.load_state_dict(state)
    assert torch.equal(whole(restored)["images"], expected)

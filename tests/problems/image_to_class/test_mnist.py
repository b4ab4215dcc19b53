"""Tests of the MNIST problem: IDX parsing, file layouts, downloads, the real test set (LeCun et al. 1998)."""

from __future__ import annotations

import gzip
import hashlib
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from miprometheus.data import check_values
from miprometheus.errors import ConfigError, DataError
from miprometheus.problems.image_to_class import mnist
from miprometheus.problems.image_to_class.mnist import MNIST
from miprometheus.registry import get_problem
from tests.conftest import SHARED_MNIST

REAL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NAMES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# --- fixtures in the exact official IDX format (§1.5) ------------------------------------------------
def fixture_images(count: int) -> torch.Tensor:
    """uint8 [N, 28, 28] with a distinct pattern per image, including 0 and 255."""
    base = torch.arange(28 * 28, dtype=torch.int64).view(28, 28)
    images = torch.stack([(base * (i + 1)) % 256 for i in range(count)]).to(torch.uint8)
    images[:, 0, 0] = 0
    images[:, 27, 27] = 255
    return images


def fixture_labels(count: int) -> torch.Tensor:
    return torch.tensor([(3 * i + 7) % 10 for i in range(count)], dtype=torch.uint8)


def idx_images(images: torch.Tensor) -> bytes:
    count, rows, cols = images.shape
    return struct.pack(">IIII", 2051, count, rows, cols) + bytes(images.flatten().tolist())


def idx_labels(labels: torch.Tensor) -> bytes:
    return struct.pack(">II", 2049, labels.shape[0]) + bytes(labels.tolist())


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def write_split(folder: Path, train: bool, count: int, compressed: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = NAMES[train]
    contents = {image_name: idx_images(fixture_images(count)), label_name: idx_labels(fixture_labels(count))}
    for name, data in contents.items():
        if compressed:
            (folder / f"{name}.gz").write_bytes(gz(data))
        else:
            (folder / name).write_bytes(data)


def model_images(problem: MNIST) -> torch.Tensor:
    """The whole split as the model sees it (the problem keeps uint8 pixels; batches are converted)."""
    return problem.collate_fn([problem[i] for i in range(len(problem))])["images"]


def load(root: Path, **overrides) -> MNIST:
    values = {"batch_size": 3, "data_folder": str(root), "download": False}
    values.update(overrides)
    return MNIST(MNIST.Params(**values))


# --- reading the official format ------------------------------------------------------------------
def test_fixture_header_round_trip():
    assert len(idx_images(fixture_images(2))) == 1584  # the size stated in §1.5
    assert idx_images(fixture_images(1))[:4] == b"\x00\x00\x08\x03"
    assert idx_labels(fixture_labels(1))[:4] == b"\x00\x00\x08\x01"


@pytest.mark.parametrize("layout", ["", "raw", "MNIST/raw"])
@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_loads_each_layout_gzip_or_plain(tmp_path, layout, compressed, train):
    count = 8 if train else 4
    write_split(tmp_path / layout, train, count, compressed)
    problem = load(tmp_path, use_train_data=train)
    assert len(problem) == count
    assert problem.images.shape == (count, 1, 28, 28) and problem.images.dtype == torch.uint8  # shared pixels
    images = model_images(problem)
    assert images.dtype == torch.float32 and torch.equal(images, fixture_images(count).unsqueeze(1).float() / 255)
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.equal(problem.targets, fixture_labels(count).long())
    sample = problem[1]
    assert sample["targets"].dtype == torch.int64 and int(sample["targets"]) == 0
    assert sample["targets_label"] == "Zero" and problem[0]["targets_label"] == "Seven"


def test_batches_match_the_definitions(tmp_path):
    write_split(tmp_path / "raw", True, 8, compressed=True)
    problem = load(tmp_path)
    batches = list(DataLoader(problem, batch_size=3, collate_fn=problem.collate_fn))
    assert [b["images"].shape[0] for b in batches] == [3, 3, 2]
    batch = batches[0]
    check_values("MNIST", batch, problem.output_definitions)
    assert batch["images"].shape == (3, 1, 28, 28) and batch["targets"].dtype == torch.int64
    assert batch["targets_label"] == ["Seven", "Zero", "Three"]
    assert problem.default_values == {"num_classes": 10, "num_channels": 1, "height": 28, "width": 28}
    assert problem.prediction_definitions["predictions"].shape == (-1, 10)


def test_resize_is_applied_to_each_batch(tmp_path):
    write_split(tmp_path, False, 4, compressed=False)
    problem = load(tmp_path, use_train_data=False, resize=[32, 20])
    assert problem.images.shape == (4, 1, 28, 28)  # the file's pixels, shared by every split
    images = model_images(problem)
    assert images.shape == (4, 1, 32, 20)
    assert problem.default_values["height"] == 32 and problem.default_values["width"] == 20
    assert problem.output_definitions["images"].shape == (-1, 1, 32, 20)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


@pytest.mark.parametrize("resize", [[32], [0, 28], "32x32", [28.5, 28]])
def test_invalid_resize_is_a_config_error(tmp_path, resize):
    write_split(tmp_path, True, 2, compressed=False)
    with pytest.raises(ConfigError, match="resize"):
        load(tmp_path, resize=resize)


def test_data_folder_is_required_and_is_a_path():
    with pytest.raises(TypeError):
        MNIST.Params()
    field = next(f for f in MNIST.Params.__dataclass_fields__.values() if f.name == "data_folder")
    assert field.metadata["path"] is True


def test_registry_finds_mnist():
    assert get_problem("MNIST") is MNIST


# --- corrupt files ---------------------------------------------------------------------------------
def test_wrong_magic_is_a_data_error_naming_the_file(tmp_path):
    write_split(tmp_path / "raw", True, 4, compressed=False)
    path = tmp_path / "raw" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[3] = 0x01  # 2049: a label header on an image file
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as info:
        load(tmp_path)
    assert "magic" in str(info.value) and str(path) in str(info.value)


def test_truncated_file_is_a_data_error(tmp_path):
    write_split(tmp_path, True, 4, compressed=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gz(idx_images(fixture_images(4))[:-10]))
    with pytest.raises(DataError, match="truncated"):
        load(tmp_path)


def test_corrupt_gzip_is_a_data_error_naming_the_file(tmp_path):
    write_split(tmp_path, True, 4, compressed=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + b"not a gzip stream at all")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load(tmp_path)


def test_short_header_and_bad_labels_are_data_errors(tmp_path):
    write_split(tmp_path, True, 4, compressed=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="too short"):
        load(tmp_path)
    labels.write_bytes(idx_labels(torch.tensor([1, 2, 12, 3], dtype=torch.uint8)))
    with pytest.raises(DataError, match="label 12"):
        load(tmp_path)
    labels.write_bytes(idx_labels(fixture_labels(3)))
    with pytest.raises(DataError, match="4 images"):
        load(tmp_path)


# --- missing files and downloads -------------------------------------------------------------------
def test_missing_files_without_download_say_what_to_place_where(tmp_path):
    with pytest.raises(DataError) as info:
        load(tmp_path, download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "raw") in message and str(tmp_path / "MNIST" / "raw") in message
    assert "download" in message


def test_offline_download_is_a_data_error_naming_files_and_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        load(tmp_path, use_train_data=False, download=True)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "raw") in message and "no network" in message
    assert not list(tmp_path.rglob("*.gz"))  # nothing half-downloaded left behind


def test_download_with_a_wrong_md5_is_rejected(tmp_path, monkeypatch):
    urls = []

    def tampered(url: str) -> bytes:
        urls.append(url)
        return gz(idx_images(fixture_images(2)))

    monkeypatch.setattr(mnist, "fetch", tampered)
    with pytest.raises(DataError, match="md5"):
        load(tmp_path, download=True)
    assert len(urls) == len(mnist.MIRRORS)  # every mirror tried
    assert not (tmp_path / "raw" / "train-images-idx3-ubyte.gz").exists()


def test_download_writes_verified_files_into_raw(tmp_path, monkeypatch):
    payloads = {"t10k-images-idx3-ubyte.gz": gz(idx_images(fixture_images(4))),
                "t10k-labels-idx1-ubyte.gz": gz(idx_labels(fixture_labels(4)))}
    for name, payload in payloads.items():
        monkeypatch.setitem(mnist.GZ_MD5, name, hashlib.md5(payload).hexdigest())
    fetched = []

    def fake_fetch(url: str) -> bytes:
        fetched.append(url)
        return payloads[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(mnist, "fetch", fake_fetch)
    problem = load(tmp_path, use_train_data=False, download=True)
    assert len(problem) == 4
    assert fetched == [mnist.MIRRORS[0] + name for name in payloads]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(payloads)  # no temporary leftovers
    # files present now: no second download
    load(tmp_path, use_train_data=False, download=True)
    assert len(fetched) == 2


def test_hand_placed_files_load_whatever_their_gzip_wrapper(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "fetch", lambda url: pytest.fail("must not download"))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_images(fixture_images(2)), compresslevel=1, mtime=12345))
    (tmp_path / "raw" / "train-labels-idx1-ubyte.gz").write_bytes(gz(idx_labels(fixture_labels(2))))
    assert len(load(tmp_path, download=True)) == 2


# --- loss and statistics ---------------------------------------------------------------------------
def test_loss_and_accuracy(tmp_path):
    write_split(tmp_path, True, 6, compressed=False)
    problem = load(tmp_path)
    batch = problem.collate_fn([problem[i] for i in range(6)])
    logits = F.one_hot(batch["targets"], 10).float() * 5
    assert problem.statistics(batch, logits) == {"acc": (6.0, 6.0), "batch_size": 6.0}
    logits[0] = torch.zeros(10)
    logits[0, (int(batch["targets"][0]) + 1) % 10] = 1.0
    assert problem.statistics(batch, logits)["acc"] == (5.0, 6.0)
    assert torch.allclose(problem.loss(batch, logits), F.cross_entropy(logits, batch["targets"]))


# --- the real MNIST test set ------------------------------------------------------------------------
needs_real_mnist = pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                      reason=f"real MNIST test files not found in {SHARED_MNIST}")


@needs_real_mnist
def test_real_test_set_loads_fast_with_the_official_label_counts():
    start = time.perf_counter()
    problem = load(SHARED_MNIST, use_train_data=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"loading 10,000 images took {elapsed:.2f} s"
    assert len(problem) == 10_000
    assert problem.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(problem.targets, minlength=10).tolist() == REAL_COUNTS
    images = model_images(problem)
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert problem[0]["targets_label"] == "Seven"  # the first test digit is a 7


@needs_real_mnist
def test_real_test_set_resized_to_32():
    problem = load(SHARED_MNIST, use_train_data=False, resize=[32, 32])
    assert problem.collate_fn([problem[0]])["images"].shape == (1, 1, 32, 32)
    assert problem.default_values["height"] == 32 and problem.default_values["width"] == 32


@pytest.mark.slow
@needs_real_mnist
def test_a_linear_classifier_learns_real_mnist():
    """A real learning check: softmax regression on 2,000 digits generalises far above chance."""
    problem = load(SHARED_MNIST, use_train_data=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(28 * 28, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train = problem.collate_fn([problem[i] for i in range(2000)])
    for _ in range(30):
        optimizer.zero_grad()
        loss = problem.loss(train, model(train["images"].flatten(1)))
        loss.backward()
        optimizer.step()
    held_out = problem.collate_fn([problem[i] for i in range(8000, 9000)])
    with torch.no_grad():
        stats = problem.statistics(held_out, model(held_out["images"].flatten(1)))
    assert stats["acc"].value > 0.8

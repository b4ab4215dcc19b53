"""Hostile MNIST IDX files: a header is checked before the data is read, and the data is read no further than the
header announces, so a gzip bomb or an absurd header is a DataError after a bounded read (DESIGN §15)."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from miprometheus.errors import DataError
from miprometheus.problems.image_to_class import mnist
from tests.conftest import run_mip

IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def images_header(count: int, rows: int = 28, cols: int = 28) -> bytes:
    return struct.pack(">IIII", mnist.IMAGES_MAGIC, count, rows, cols)


def gzip_bomb(header: bytes, zeros: int) -> bytes:
    """``header`` followed by ``zeros`` zero bytes, gzip-compressed a chunk at a time (about 1/1000 of the size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: the gzip container
    parts = [compressor.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def test_a_gzip_bomb_behind_a_valid_header_is_refused_after_a_bounded_read(tmp_path):
    path = tmp_path / f"{IMAGES}.gz"
    path.write_bytes(gzip_bomb(images_header(4), 64 << 20))  # 4 digits announced, 64 MB of zeros held
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(DataError, match="holds more data than its header announces") as info:
            mnist.read_idx_images(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and "4 images of 28x28" in str(info.value)
    assert peak < 2 * mnist.READ_CHUNK_BYTES + (1 << 20), f"{peak:,} bytes held while reading"
    assert time.monotonic() - start < 5


def test_a_plain_file_longer_than_its_header_is_refused(tmp_path):
    path = tmp_path / IMAGES
    path.write_bytes(images_header(2) + bytes(2 * 784 + 1))
    with pytest.raises(DataError, match="holds more data than its header announces"):
        mnist.read_idx_images(path)
    path.write_bytes(images_header(2) + bytes(2 * 784))
    assert mnist.read_idx_images(path).shape == (2, 28, 28)


@pytest.mark.parametrize(("dims", "shown"), [((4, 0, 0), "4 images of 0x0"), ((0, 28, 28), "0 images of 28x28"),
                                             ((4, 28, 0), "4 images of 28x0")])
def test_a_header_announcing_an_empty_dimension_is_refused(tmp_path, dims, shown):
    path = tmp_path / f"{IMAGES}.gz"
    path.write_bytes(gzip.compress(images_header(*dims), mtime=0))
    with pytest.raises(DataError, match=f"announces {shown}: every dimension"):
        mnist.read_idx_images(path)


def test_a_label_file_announcing_no_labels_is_refused(tmp_path):
    path = tmp_path / LABELS
    path.write_bytes(struct.pack(">II", mnist.LABELS_MAGIC, 0))
    with pytest.raises(DataError, match="announces 0 labels"):
        mnist.read_idx_labels(path)


def test_a_header_announcing_more_than_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / IMAGES
    path.write_bytes(images_header(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + bytes(100))  # 7.9e28 bytes announced
    with pytest.raises(DataError, match="more than the 2,147,483,648 bytes"):
        mnist.read_idx_images(path)
    monkeypatch.setattr(mnist, "MAX_IDX_BYTES", 784)
    path.write_bytes(images_header(2) + bytes(2 * 784))
    with pytest.raises(DataError, match=r"2 images of 28x28 \(1,568 bytes\), more than"):
        mnist.read_idx_images(path)


def test_hostile_mnist_files_stop_mip_train_before_the_experiment_folder_exists(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / f"{LABELS}.gz").write_bytes(gzip.compress(struct.pack(">II", mnist.LABELS_MAGIC, 4) + bytes(4)))
    config = tmp_path / "mnist.yaml"
    config.write_text(f"""
training:
  problem: {{name: MNIST, batch_size: 2, data_folder: {data}, use_train_data: false, download: false}}
  optimizer: {{name: Adam, lr: 0.001}}
  terminal_conditions: {{episode_limit: 2}}
model: {{name: LeNet5}}
""")
    for content, message in ((images_header(4, 0, 0), "announces 4 images of 0x0"),
                             (gzip_bomb(images_header(4), 8 << 20), "holds more data than its header announces")):
        (data / f"{IMAGES}.gz").write_bytes(content if content[:2] == b"\x1f\x8b" else gzip.compress(content))
        result = run_mip("train", config, "--expdir", tmp_path / "exp", "--no-progress", timeout=120)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and str(data / f"{IMAGES}.gz") in result.stderr
        assert not (tmp_path / "exp").exists()


def test_the_real_test_digits_still_read(tmp_path):
    from tests.conftest import SHARED_MNIST

    path = Path(SHARED_MNIST) / f"{IMAGES}.gz"
    if not path.is_file():
        pytest.skip(f"no {path}")
    images, labels = mnist.read_idx_images(path), mnist.read_idx_labels(Path(SHARED_MNIST) / f"{LABELS}.gz")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,) and int(images.max()) == 255

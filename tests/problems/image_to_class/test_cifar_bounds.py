"""Hostile CIFAR files: an oversized member or archive is refused from its announced size before it is read, and a
pickled array whose shape disagrees with its bytes is a DataError (DESIGN §16, Image problems and CIFAR)."""

from __future__ import annotations

import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from miprometheus.errors import DataError
from miprometheus.problems.image_to_class import cifar_format as cf
from miprometheus.problems.image_to_class.cifar import CIFAR10

TRAIN = np.zeros((12, 3, 32, 32), np.uint8)
TEST = np.zeros((4, 3, 32, 32), np.uint8)


def write10(root: Path, *, archive: bool) -> Path:
    cf.write_cifar10(root, TRAIN, [1] * 12, TEST, [2] * 4, archive=archive, keep_folder=not archive)
    return root


def load(root: Path) -> CIFAR10:
    return CIFAR10(CIFAR10.Params(batch_size=4, data_folder=str(root), download=False))


def test_an_oversized_batch_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    write10(tmp_path, archive=False)
    monkeypatch.setattr(cf, "MAX_MEMBER_BYTES", 5_000)  # each batch holds 2 or 3 images: 6 to 10 kB
    with pytest.raises(DataError, match=r"data_batch_1 holds [\d,]+ bytes, more than the 5,000"):
        load(tmp_path)


def test_a_batch_that_is_a_device_is_refused_unread(tmp_path, monkeypatch):
    write10(tmp_path, archive=False)
    batch = tmp_path / cf.CIFAR10_FOLDER / "data_batch_1"
    batch.unlink()
    batch.symlink_to("/dev/zero")  # read whole, it never ends

    def no_reading(path: Path) -> bytes:
        raise AssertionError(f"{path} was read")  # a read of /dev/zero would take all the memory there is

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(DataError, match="data_batch_1 is not a regular file"):
        cf.read_members(tmp_path, cf.CIFAR10_FOLDER, cf.CIFAR10_ARCHIVE, ["data_batch_1"])
    with pytest.raises(DataError, match="lacks data_batch_1"):  # the problem looks first
        load(tmp_path)


def test_an_oversized_archive_member_is_refused_from_its_header(tmp_path, monkeypatch):
    write10(tmp_path, archive=True)
    monkeypatch.setattr(cf, "MAX_MEMBER_BYTES", 5_000)
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz holds cifar-10-batches-py/\S+ of [\d,]+ bytes"):
        load(tmp_path)


def tar_gz_of_zeros(names: list[str], size: int) -> bytes:
    """A tar.gz of members of ``size`` zero bytes each, compressed a chunk at a time (about 1/1000 of the size)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: the gzip container
    parts = []
    for name in names:
        info = tarfile.TarInfo(name)
        info.size = size
        parts.append(compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        chunk = bytes(1 << 20)
        parts += [compressor.compress(chunk) for _ in range(size >> 20)]
    parts += [compressor.compress(bytes(2 * tarfile.BLOCKSIZE)), compressor.flush()]
    return b"".join(parts)


def test_a_stream_of_zeros_before_the_batches_is_not_read_to_its_end(tmp_path, monkeypatch):
    """Members of 64 MB of zeros (64 kB compressed) before the batches: refused at the archive's bound, holding far
    less than a member (tarfile decompresses 16 kB of input at a time: at most ~16 MB of zeros)."""
    names = [f"{cf.CIFAR10_FOLDER}/padding_{i}" for i in range(3)]
    (tmp_path / cf.CIFAR10_ARCHIVE).write_bytes(tar_gz_of_zeros(names, 64 << 20))
    monkeypatch.setattr(cf, "MAX_ARCHIVE_BYTES", 100 << 20)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(DataError, match=r"padding_1 of 67,108,864 bytes at byte 67,109,\d+: more than"):
            load(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20, f"{peak:,} bytes held"
    assert time.monotonic() - start < 10


def test_a_pickled_array_whose_shape_disagrees_with_its_bytes_is_a_data_error():
    data = cf.py2_pickle_bytes({"data": np.zeros((12, 3072), np.uint8), "labels": [0] * 12})
    assert data.count(b"K\x0cM\x00\x0c") == 1  # the shape (12, 3072)
    for shape in (b"K\x0dM\x00\x0c", b"J\xff\xff\xff\x7fM\x00\x0c"):  # 13 rows; 2**31 - 1 rows
        with pytest.raises(DataError, match="cannot be unpickled: ValueError: buffer size does not match"):
            cf.parse_batch(data.replace(b"K\x0cM\x00\x0c", shape), "batch", {"labels": 10})

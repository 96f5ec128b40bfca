"""smallNORB reader on small files the test writes in the NORB binary matrix format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from overlooked.data import smallnorb as N
from overlooked.errors import DataError


def _write(path, array, magic):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)  # at least 3 dimensions are stored
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())


def _fake_split(root, split, n, seed):
    rng = np.random.default_rng(seed)
    folder = root / "smallnorb"
    folder.mkdir(exist_ok=True)
    images = rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)
    labels = (np.arange(n) % 5).astype(np.int32)
    info = rng.integers(0, 9, size=(n, 4)).astype(np.int32)
    _write(folder / N.FILES[split].format("dat"), images, 0x1E3D4C55)
    _write(folder / N.FILES[split].format("cat"), labels, 0x1E3D4C54)
    _write(folder / N.FILES[split].format("info"), info, 0x1E3D4C54)
    return images, labels, info


def test_read_norb_matrix_roundtrip_and_bad_files(tmp_path):
    images, labels, info = _fake_split(tmp_path, "train", 4, 0)
    got, got_labels, got_info = N.load_smallnorb_split("train", tmp_path)
    assert torch.equal(got, torch.from_numpy(images)) and got_labels.tolist() == labels.tolist()
    assert torch.equal(got_info, torch.from_numpy(info).long())
    bad = tmp_path / "bad.mat"
    bad.write_bytes(np.array([0x1234, 1, 4, 1, 1], dtype="<i4").tobytes() + b"\0" * 4)
    with pytest.raises(DataError, match="unknown NORB magic"):
        N.read_norb_matrix(bad)
    short = tmp_path / "short.mat"
    short.write_bytes(np.array([0x1E3D4C55, 1, 10, 1, 1], dtype="<i4").tobytes() + b"\0" * 3)
    with pytest.raises(DataError, match="header says"):
        N.read_norb_matrix(short)


def test_smallnorb_splits_downsample_both_views(tmp_path):
    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    splits = N.smallnorb(data_dir=tmp_path, image_size=48, val_fraction=0.2)
    assert len(splits.train) == 8 and len(splits.val) == 2 and len(splits.test) == 5
    batch = splits.test[torch.arange(5)]
    assert batch["image"].shape == (5, 2, 48, 48) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    with pytest.raises(DataError, match="smallNORB files missing"):
        N.smallnorb(data_dir=tmp_path / "nowhere")

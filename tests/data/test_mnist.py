"""MNIST: IDX parsing, canonical counts, the registered builder, and clear errors for bad files."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch

from overlooked.data import mnist
from overlooked.data.base import split_train_val
from overlooked.errors import DataError
from overlooked.registry import DATASETS

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # MANIFEST 2.3
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def test_read_idx_raw_and_gzip_agree(tmp_path):
    data = _idx(mnist.IMAGES_MAGIC, (2, 2, 3), bytes(range(12)))
    (tmp_path / "x.idx").write_bytes(data)
    (tmp_path / "x.idx.gz").write_bytes(gzip.compress(data))
    expected = torch.arange(12, dtype=torch.uint8).reshape(2, 2, 3)
    assert torch.equal(mnist.read_idx(tmp_path / "x.idx"), expected)
    assert torch.equal(mnist.read_idx(tmp_path / "x.idx.gz", mnist.IMAGES_MAGIC), expected)


@pytest.mark.parametrize(
    ("data", "pieces"),
    [
        (_idx(mnist.LABELS_MAGIC, (10,), bytes(5)), ["byte offset 13", "10 data bytes", "only 5 (truncated)"]),
        (_idx(mnist.LABELS_MAGIC, (3,), bytes(5)), ["byte offset 11", "2 extra byte(s)"]),
        (
            _idx(0x00000D03, (1, 1, 1), bytes(1)),
            ["byte offset 0", "magic 0x00000803 (images) or 0x00000801 (labels)", "0x00000d03"],
        ),
        (_idx(0x00000903, (1, 1, 1), bytes(1)), ["byte offset 0", "0x00000903"]),  # data type 0x09, not uint8
        (struct.pack(">I", mnist.IMAGES_MAGIC) + bytes(5), ["byte offset 9", "16-byte header"]),
        (b"\x00\x00", ["byte offset 2", "4-byte magic"]),
    ],
    ids=["truncated", "trailing-garbage", "wrong-magic", "wrong-dtype", "truncated-header", "too-short"],
)
def test_read_idx_rejects_bad_files_with_offset_and_fix(tmp_path, data, pieces):
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError) as info:
        mnist.read_idx(path)
    message = str(info.value)
    assert str(path) in message and "expected" in message and "overlooked data fetch mnist" in message
    for piece in pieces:
        assert piece in message


def test_read_idx_rejects_expected_magic_mismatch(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(_idx(mnist.LABELS_MAGIC, (1,), b"\x03"))
    with pytest.raises(DataError, match=r"expected magic 0x00000803 \(images\), found 0x00000801"):
        mnist.read_idx(path, mnist.IMAGES_MAGIC)


def test_read_idx_rejects_corrupt_and_fake_gzip(tmp_path):
    good = gzip.compress(_idx(mnist.LABELS_MAGIC, (100,), bytes(100)))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt gzip data"):
        mnist.read_idx(tmp_path / "cut.gz")
    (tmp_path / "plain.gz").write_bytes(_idx(mnist.LABELS_MAGIC, (1,), b"\x01"))
    with pytest.raises(DataError, match=r"plain\.gz: expected gzip data .* found 00 00"):
        mnist.read_idx(tmp_path / "plain.gz")


def test_load_mnist_missing_file_names_path_folder_and_fix(tmp_path):
    with pytest.raises(DataError) as info:
        mnist.load_mnist("test", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz") in message
    assert f"looked in folder {tmp_path / 'mnist'}" in message
    assert "overlooked data fetch mnist" in message and "OVERLOOKED_DATA" in message


@pytest.mark.parametrize("name, kwargs, files", [
    ("mnist", {}, 4),
    ("multimnist", {}, 4),
    ("affnist_style", {}, 4),
    ("affnist_style", {"test_set": "affnist"}, None),  # the affNIST test file is checked first, then MNIST's training files
])
def test_every_missing_mnist_file_is_named_at_once(tmp_path, name, kwargs, files):
    """A walkthrough found the error named only the training files; a user who copied those two failed again on
    the test files. Each MNIST-built dataset now checks every MNIST file it reads before it reads any (the real
    affNIST test file, another dataset's, is still checked first and on its own)."""
    with pytest.raises(DataError) as info:
        DATASETS.create(name, data_dir=tmp_path, **kwargs)
    message = str(info.value)
    wanted = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    if files is None:  # the real affNIST test set is missing too: that file is named, as before
        assert str(tmp_path / "affnist" / "test.mat.zip") in message
    else:
        assert [w for w in wanted if str(tmp_path / "mnist" / w) in message] == wanted


def test_load_mnist_rejects_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown MNIST split 'val'"):
        mnist.load_mnist("val", data_dir=tmp_path)


@pytest.mark.data
def test_load_mnist_detects_one_flipped_byte(tmp_path, data_dir):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", folder)
    payload = bytearray(gzip.decompress((data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    payload[8 + 17] = (payload[8 + 17] + 1) % 10  # still a valid label, so only the checksum can tell
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DataError) as info:
        mnist.load_mnist("test", data_dir=tmp_path)
    message = str(info.value)
    assert "checksum mismatch" in message and str(bad) in message
    assert "expected 27ae3e4e09519cfbb04c329615203637" in message and "overlooked data fetch mnist" in message
    _, labels = mnist.load_mnist("test", data_dir=tmp_path, verify=False)  # verify=False reads it as it is
    assert int(labels[17]) == payload[8 + 17]


@pytest.mark.data
def test_load_mnist_canonical_counts(data_dir):
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        images, labels = mnist.load_mnist(split, data_dir=data_dir)
        assert images.dtype == torch.uint8 and images.shape == (sum(counts), 28, 28)
        assert labels.dtype == torch.int64 and labels.shape == (sum(counts),)
        assert torch.bincount(labels, minlength=10).tolist() == counts
        assert int(images.max()) == 255 and int(images.min()) == 0


@pytest.mark.data
def test_registered_builder_splits(data_dir):
    splits = DATASETS.create("mnist", data_dir=data_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54_000, 6_000, 10_000)
    assert splits.input_keys == ("image",) and splits.target_key == "label"
    assert splits.meta == {"num_classes": 10, "image_shape": (1, 28, 28), "name": "mnist", "input_range": "pixel intensity / 255, in [0, 1]"}
    image, label = splits.train.tensors["image"], splits.train.tensors["label"]
    assert image.dtype == torch.float32 and image.shape == (54_000, 1, 28, 28)
    assert label.dtype == torch.int64 and 0.0 <= float(image.min()) and float(image.max()) == 1.0

    # val is exactly the seeded held-out rows of the training file, disjoint from train
    train_idx, val_idx = split_train_val(60_000, 0.1, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist()) and len(train_idx) + len(val_idx) == 60_000
    raw_images, raw_labels = mnist.load_mnist("train", data_dir=data_dir)
    assert torch.equal(splits.val.tensors["label"], raw_labels[val_idx])
    assert torch.equal(splits.val.tensors["image"], raw_images[val_idx].unsqueeze(1).float() / 255)
    assert torch.equal(splits.train.tensors["label"], raw_labels[train_idx])


def test_split_is_deterministic_and_seeded():
    first, again, other = (split_train_val(60_000, 0.1, seed) for seed in (0, 0, 1))
    assert torch.equal(first[1], again[1]) and not torch.equal(first[1], other[1])


@pytest.mark.data
@pytest.mark.parametrize("edited", ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
@pytest.mark.parametrize("name", ["mnist", "multimnist", "affnist_style"])
def test_every_mnist_based_dataset_checks_the_files_and_passes_verify_through(tmp_path, data_dir, name, edited):
    """README: every dataset's files are checked at each load and data.kwargs.verify=false reads an edited copy;
    the datasets built on MNIST (MultiMNIST, affNIST-style) take the switch too and pass it to every MNIST read."""
    import overlooked.data.affnist  # noqa: F401  (registers the builders)
    import overlooked.data.multimnist  # noqa: F401

    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in (data_dir / "mnist").glob("*-ubyte.gz"):
        (folder / f.name).symlink_to(f)
    payload = bytearray(gzip.decompress((data_dir / "mnist" / edited).read_bytes()))
    payload[8 + 5] = (payload[8 + 5] + 1) % 10  # an edited label (training or test file): only the checksum can tell
    (folder / edited).unlink()
    (folder / edited).write_bytes(gzip.compress(bytes(payload)))
    small = {"n_train": 8, "n_val": 8, "n_test": 8} if name == "multimnist" else {}
    with pytest.raises(DataError, match="checksum mismatch"):
        DATASETS.create(name, data_dir=tmp_path, **small)
    splits = DATASETS.create(name, data_dir=tmp_path, verify=False, **small)
    assert len(splits.train) > 0


@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "multimnist", "affnist_style"])
def test_download_re_fetches_a_corrupt_file_and_hashes_each_file_once(tmp_path, data_dir, monkeypatch, name):
    """With ``download=True`` the store checks every md5 before reading (a corrupt file is fetched again), and
    the reads that follow do not hash the same bytes again: four files, four md5s (there were twelve)."""
    import hashlib

    import overlooked.data.affnist  # noqa: F401  (registers the builders)
    import overlooked.data.multimnist  # noqa: F401
    from overlooked.data import store

    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in (data_dir / "mnist").glob("*-ubyte.gz"):
        shutil.copy(f, folder)
    payload = bytearray(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    payload[8 + 5] = (payload[8 + 5] + 1) % 10  # corrupt: only the checksum can tell
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(payload)))
    fetched = []

    def fake_fetch(dataset, root, mirrors=None, files=None, **kwargs):  # the canonical file, as a download would bring it
        fetched.extend(f for f in files if (Path(root) / f).read_bytes() != (data_dir / f).read_bytes())
        for f in fetched:
            shutil.copy(data_dir / f, Path(root) / f)
        return Path(root)

    real_md5, hashed = hashlib.md5, []
    monkeypatch.setattr(store, "fetch", fake_fetch)
    monkeypatch.setattr(hashlib, "md5", lambda *a, **k: hashed.append(1) or real_md5(*a, **k))
    small = {"n_train": 8, "n_val": 8, "n_test": 8} if name == "multimnist" else {}
    splits = DATASETS.create(name, data_dir=tmp_path, download=True, **small)
    assert fetched == ["mnist/t10k-labels-idx1-ubyte.gz"] and len(splits.train) > 0
    assert len(hashed) == 4  # the four files once each
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_a_seed_outside_the_generators_range_is_named():
    """An adversarial review's: data.seed=2**70 on multimnist was torch's "Overflow when unpacking long long"."""
    for seed in (2**70, 2**64, -(2**63) - 1, 1.5, True):
        with pytest.raises(DataError, match=r"data\.kwargs\.seed must be a whole number in \[-2\*\*63, 2\*\*64\)"):
            split_train_val(10, 0.1, seed)
    for seed in (-1, 2**64 - 1, -(2**63)):  # what torch's generators take, as before
        assert len(split_train_val(10, 0.1, seed)[1]) == 1


def test_validation_count_rounds_to_nearest():
    """n_val = round(f n): 44.5 -> 44 (half to even), 4.6 -> 5; gas batch 1 has 445 rows."""
    from overlooked.data.base import split_train_val

    assert [len(split_train_val(n, f, 0)[1]) for n, f in [(445, 0.1), (46, 0.1), (10, 0.2)]] == [44, 5, 2]

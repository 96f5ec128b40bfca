"""affNIST-style data: canvas placement, seeded affine test transforms, and the real .mat reader on a small
file the test writes."""

from __future__ import annotations

import hashlib
import math
import zipfile

import numpy as np
import pytest
import torch

from overlooked.data import affnist as A
from overlooked.data import store
from overlooked.errors import DataError


def test_on_canvas_centres_with_a_6px_border():
    out = A.on_canvas(torch.ones(2, 28, 28))
    assert out.shape == (2, 1, 40, 40) and out.sum() == 2 * 784
    assert out[0, 0, 6:34, 6:34].min() == 1 and out[0, 0, :6].max() == 0


def test_identity_and_pure_translation_by_hand():
    img = torch.zeros(1, 1, 40, 40)
    img[0, 0, 20, 20] = 1.0
    ident = {"rotation_deg": torch.zeros(1), "shear": torch.zeros(1), "scale_x": torch.ones(1), "scale_y": torch.ones(1), "translate_x_px": torch.zeros(1), "translate_y_px": torch.zeros(1)}
    torch.testing.assert_close(A.apply_affine(img, A.affine_matrices(ident)), img, atol=1e-5, rtol=0)
    moved = A.apply_affine(img, A.affine_matrices({**ident, "translate_x_px": torch.tensor([3.0]), "translate_y_px": torch.tensor([-2.0])}))
    assert moved[0, 0, 18, 23] == pytest.approx(1.0, abs=1e-5)  # x right by 3, y up by 2


def test_rotation_matrix_by_hand():
    p = {"rotation_deg": torch.tensor([90.0]), "shear": torch.zeros(1), "scale_x": torch.tensor([2.0]), "scale_y": torch.ones(1), "translate_x_px": torch.zeros(1), "translate_y_px": torch.zeros(1)}
    m = A.affine_matrices(p)[0]
    torch.testing.assert_close(m[:, :2], torch.tensor([[0.0, -1.0], [2.0, 0.0]]), atol=1e-6, rtol=0)


def test_test_set_is_seeded_and_within_the_ranges():
    gen = torch.Generator().manual_seed(0)
    params = A.sample_affine(1000, gen)
    for key, (lo, hi) in A.AFFNIST_RANGES.items():
        assert lo <= params[key].min() and params[key].max() <= hi
    digits = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(1))
    a, b = A.affnist_style_test(digits, seed=3), A.affnist_style_test(digits, seed=3)
    assert a.shape == (5, 1, 40, 40) and torch.equal(a, b) and not torch.equal(a, A.affnist_style_test(digits, seed=4))
    assert A.AFFNIST_RANGES["rotation_deg"][1] * math.pi / 180 < 0.35  # +-20 degrees


def _write_affnist_mat(path, images, labels):
    """A small file laid out like affNIST's test.mat: struct affNISTdata, image 1600 x N (row-major 40x40 per
    column), label_int N, label_one_of_n 10 x N."""
    scipy_io = pytest.importorskip("scipy.io")
    struct = {"image": images.reshape(len(images), 1600).T, "label_int": labels, "label_one_of_n": np.eye(10, dtype=np.uint8)[labels].T}
    scipy_io.savemat(path, {"affNISTdata": struct})


def _write_affnist_zip(path, images, labels):
    """``_write_affnist_mat`` zipped as affNIST serves it: one member ``test.mat``."""
    mat = path.with_name(path.name + ".mat")
    _write_affnist_mat(mat, images, labels)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(mat, "test.mat")


def test_read_affnist_mat_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 40, 40), dtype=np.uint8)
    labels = np.array([7, 0, 3], dtype=np.uint8)
    path = tmp_path / "test.mat"
    _write_affnist_mat(path, images, labels)
    got_images, got_labels = A.read_affnist_mat(path)
    assert got_labels.tolist() == [7, 0, 3]
    torch.testing.assert_close(got_images, torch.from_numpy(images).float().unsqueeze(1) / 255.0)
    with pytest.raises(DataError, match="no such affNIST file"):
        A.read_affnist_mat(tmp_path / "missing.mat")


def test_read_affnist_mat_of_one_example_and_labels_outside_the_digits(tmp_path):
    """scipy's squeeze_me turns a one-example file's image into [1600] and its label into a scalar (an
    AttributeError once); labels outside 0..9 are named before they reach a loss."""
    image = np.arange(1600, dtype=np.int64).reshape(1, 40, 40) % 256
    _write_affnist_mat(tmp_path / "one.mat", image.astype(np.uint8), np.array([3], dtype=np.uint8))
    got_images, got_labels = A.read_affnist_mat(tmp_path / "one.mat")
    assert got_labels.tolist() == [3] and torch.equal(got_images, torch.from_numpy(image).float().unsqueeze(1) / 255.0)
    scipy_io = pytest.importorskip("scipy.io")
    scipy_io.savemat(tmp_path / "ten.mat", {"affNISTdata": {"image": np.zeros((1600, 2), np.uint8), "label_int": np.array([3, 10], np.uint8)}})
    with pytest.raises(DataError, match=r"label_int must hold digits 0\.\.9, found 3\.\.10"):
        A.read_affnist_mat(tmp_path / "ten.mat")


def test_a_zip_made_on_a_mac_is_read_past_its_resource_fork(tmp_path):
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, size=(2, 40, 40), dtype=np.uint8), np.array([1, 2], dtype=np.uint8)
    _write_affnist_mat(tmp_path / "t.mat", images, labels)
    with zipfile.ZipFile(tmp_path / "test.mat.zip", "w") as zf:
        zf.write(tmp_path / "t.mat", "test.mat")
        zf.writestr("__MACOSX/._test.mat", b"\x00\x05\x16\x07resource fork")
    got_images, got_labels = A.read_affnist_mat(tmp_path / "test.mat.zip")
    assert got_labels.tolist() == [1, 2] and torch.equal(got_images, torch.from_numpy(images).float().unsqueeze(1) / 255.0)


def test_the_style_test_set_follows_the_seed(monkeypatch):
    """affnist_style's own test set is the MNIST test digits warped with seed + 2 (no data needed: MNIST is faked)."""
    digits = torch.randint(0, 256, (6, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    monkeypatch.setattr(A, "ensure_mnist", lambda *a, **k: False)
    monkeypatch.setattr(A, "load_mnist", lambda split, *a, **k: (digits, torch.arange(6)))
    s0, s1 = (A.affnist_style(None, seed=seed, val_fraction=0.5) for seed in (0, 1))
    assert torch.equal(s0.test.tensors["image"], A.affnist_style_test(digits.float() / 255.0, 2))
    assert torch.equal(s1.test.tensors["image"], A.affnist_style_test(digits.float() / 255.0, 3))


def test_read_affnist_zip_as_served_equals_the_mat_inside(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 40, 40), dtype=np.uint8)
    labels = np.array([1, 2, 3, 9], dtype=np.uint8)
    _write_affnist_mat(tmp_path / "test.mat", images, labels)
    _write_affnist_zip(tmp_path / "test.mat.zip", images, labels)
    from_zip, from_mat = A.read_affnist_mat(tmp_path / "test.mat.zip"), A.read_affnist_mat(tmp_path / "test.mat")
    assert torch.equal(from_zip[0], from_mat[0]) and torch.equal(from_zip[1], from_mat[1])
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", "no matrices here")
    with pytest.raises(DataError, match="expected one .mat file inside the zip"):
        A.read_affnist_mat(tmp_path / "empty.zip")
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match="not a readable affNIST .mat file"):
        A.read_affnist_mat(tmp_path / "broken.mat")


def test_affnist_download_entry_is_the_official_test_zip_with_a_sha256(tmp_path):
    (check,) = store.dataset_files("affnist")
    assert (check.path, check.algorithm) == (A.AFFNIST_TEST_FILE, "sha256")
    assert check.digest == "2cde38ec83ee2ebfd7b901f8be5a09efb17a1bda04771f9b4905751eb945c01a"  # TFDS url_checksums/affnist.txt
    source = store.SOURCES["affnist"]
    assert source.mirrors[0] + source.remote_name(check.path) == "https://www.cs.toronto.edu/~tijmen/affNIST/32x/transformed/test.mat.zip"
    # a mirror serving other bytes under the official name fails the checksum, and nothing is kept
    www = tmp_path / "www"
    www.mkdir()
    _write_affnist_zip(www / "test.mat.zip", np.zeros((2, 40, 40), np.uint8), np.array([0, 1], np.uint8))
    assert hashlib.sha256((www / "test.mat.zip").read_bytes()).hexdigest() != check.digest
    with pytest.raises(DataError, match="checksum"):
        store.fetch("affnist", tmp_path / "root", mirrors=[www.as_uri() + "/"])
    assert not (tmp_path / "root" / A.AFFNIST_TEST_FILE).exists()


def test_load_affnist_test_names_the_missing_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        A.load_affnist_test(tmp_path)
    assert str(tmp_path / A.AFFNIST_TEST_FILE) in str(info.value) and "overlooked data fetch affnist" in str(info.value)


def test_unknown_test_set_is_refused_before_any_file_is_read(tmp_path):
    with pytest.raises(DataError, match="unknown test_set 'affnst'; use one of style, affnist"):
        A.affnist_style(tmp_path, test_set="affnst")


@pytest.mark.data
def test_affnist_style_tests_on_the_real_affnist_file_when_asked(tmp_path, data_dir):
    """``test_set="affnist"``: train and validation as before, test from ``affnist/test.mat.zip`` under the data
    root (here a small file the test writes beside a link to the real MNIST)."""
    (tmp_path / "mnist").symlink_to(data_dir / "mnist", target_is_directory=True)
    (tmp_path / "affnist").mkdir()
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, size=(5, 40, 40), dtype=np.uint8), np.array([4, 4, 0, 8, 2], np.uint8)
    _write_affnist_zip(tmp_path / A.AFFNIST_TEST_FILE, images, labels)
    with pytest.raises(DataError, match="test.mat.zip failed its checksum"):  # not the published file
        A.affnist_style(tmp_path, test_set="affnist")
    real = A.affnist_style(tmp_path, test_set="affnist", verify=False)  # read as it is
    style = A.affnist_style(tmp_path)
    assert len(real.test) == 5 and real.test.tensors["label"].tolist() == [4, 4, 0, 8, 2]
    torch.testing.assert_close(real.test.tensors["image"], torch.from_numpy(images).float().unsqueeze(1) / 255.0)
    assert real.meta["test_set"] == "affnist" and style.meta["test_set"] == "style" and len(style.test) == 10000
    assert torch.equal(real.val.tensors["image"], style.val.tensors["image"]) and torch.equal(real.train.tensors["label"], style.train.tensors["label"])

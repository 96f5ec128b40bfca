"""affNIST-style data: canvas placement, seeded affine test transforms, and the real .mat reader on a small
file the test writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from overlooked.data import affnist as A
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


def test_read_affnist_mat_roundtrip(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 40, 40), dtype=np.uint8)
    labels = np.array([7, 0, 3], dtype=np.uint8)
    struct = {"image": images.reshape(3, 1600).T, "label_int": labels, "label_one_of_n": np.eye(10, dtype=np.uint8)[labels].T}
    path = tmp_path / "test.mat"
    scipy_io.savemat(path, {"affNISTdata": struct})
    got_images, got_labels = A.read_affnist_mat(path)
    assert got_labels.tolist() == [7, 0, 3]
    torch.testing.assert_close(got_images, torch.from_numpy(images).float().unsqueeze(1) / 255.0)
    with pytest.raises(DataError, match="no such affNIST file"):
        A.read_affnist_mat(tmp_path / "missing.mat")

"""The capsule experiments' data by hand: MultiMNIST's single-digit images match their labels (the
reconstruction targets of Sabour et al. 2017, §6), and the affNIST-style warp moves pixels where the
forward map A = R(theta) Shear(s) Scale(sx, sy) + t sends them (§5.2)."""

from __future__ import annotations

import math

import numpy as np
import torch

from overlooked.capsules.models import CapsuleLoss
from overlooked.data.affnist import affine_matrices, apply_affine
from overlooked.data.multimnist import MultiMNISTPairs

F64 = torch.float64


def _pairs(n: int = 64) -> MultiMNISTPairs:
    """Two "digits" per class, each a solid 28x28 block of intensity (class + 1) / 10."""
    labels = torch.arange(20) % 10
    images = ((labels.double() + 1) / 10).view(20, 1, 1).expand(20, 28, 28).float().contiguous()
    return MultiMNISTPairs(images, labels, n=n, seed=5)


def test_multimnist_single_digit_images_carry_the_class_in_labels_order():
    """Sabour et al. 2017, §6: ``image_a`` is the digit of ``labels[:, 0]``, ``image_b`` that of ``labels[:, 1]``."""
    batch = _pairs()[torch.arange(64)]
    la, lb = batch["labels"][:, 0], batch["labels"][:, 1]
    assert (la != lb).all()
    torch.testing.assert_close(batch["image_a"].amax((1, 2, 3)), (la.float() + 1) / 10)
    torch.testing.assert_close(batch["image_b"].amax((1, 2, 3)), (lb.float() + 1) / 10)
    torch.testing.assert_close(batch["image"], torch.maximum(batch["image_a"], batch["image_b"]))
    assert torch.equal(batch["label"], torch.nn.functional.one_hot(la, 10).float() + torch.nn.functional.one_hot(lb, 10).float())


def test_multimnist_reconstruction_targets_are_the_digits_of_their_classes():
    """Each reconstruction is scored against the digit of the class it was decoded from (Sabour et al. 2017, §6)."""
    batch = _pairs()[torch.arange(64)]
    classes = batch["labels"].flip(1)  # decoded in the other order
    out = {"reconstruction": torch.zeros(64, 2, 36 * 36), "reconstruction_classes": classes}
    targets = CapsuleLoss(recon_keys=("image_a", "image_b")).recon_targets(out, batch)
    torch.testing.assert_close(targets.amax(-1), (classes.float() + 1) / 10)


def _params(rotation=0.0, shear=0.0, sx=1.0, sy=1.0, tx=0.0, ty=0.0):
    t = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    return {"rotation_deg": t(rotation), "shear": t(shear), "scale_x": t(sx), "scale_y": t(sy), "translate_x_px": t(tx), "translate_y_px": t(ty)}


def test_affine_matrix_is_rotation_times_shear_times_scale():
    """A = R(30 deg) [[1, 0.2], [0, 1]] diag(1.1, 0.9), translation (2, -3): the product worked out in numpy."""
    c, s = math.sqrt(3) / 2, 0.5
    R = np.array([[c, -s], [s, c]])
    expected = R @ np.array([[1.0, 0.2], [0.0, 1.0]]) @ np.diag([1.1, 0.9])
    # by hand: [[c 1.1, (0.2 c - s) 0.9], [s 1.1, (0.2 s + c) 0.9]]
    np.testing.assert_allclose(expected, [[0.9526279441628825, -0.294115427318801], [0.55, 0.8694228634059948]], rtol=1e-12)
    A = affine_matrices(_params(30.0, 0.2, 1.1, 0.9, 2.0, -3.0))
    np.testing.assert_allclose(A[0].numpy(), np.concatenate([expected, [[2.0], [-3.0]]], 1), rtol=1e-12, atol=1e-15)


def test_affine_warp_sends_each_pixel_where_the_forward_map_puts_it():
    """The warp applies the forward map A p + t about the centre (x right, y down): on a 4x4 image a 90 degree
    rotation, (x, y) -> (-y, x), takes row 0, column 3, (x, y) = (1.5, -1.5), to (1.5, 1.5): row 3, column 3;
    with t = (-1, 1) row 0, column 1, (-0.5, -1.5), goes to (1.5 - 1, -0.5 + 1) = (0.5, 0.5): row 2, column 2."""
    for (row, col), t, (row_to, col_to) in (((0, 3), (0.0, 0.0), (3, 3)), ((0, 1), (-1.0, 1.0), (2, 2))):
        image = torch.zeros(1, 1, 4, 4, dtype=F64)
        image[0, 0, row, col] = 1.0
        warped = apply_affine(image, affine_matrices(_params(rotation=90.0, tx=t[0], ty=t[1])))
        expected = torch.zeros(1, 1, 4, 4, dtype=F64)
        expected[0, 0, row_to, col_to] = 1.0
        torch.testing.assert_close(warped, expected, atol=1e-9, rtol=0)

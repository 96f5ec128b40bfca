"""Augmentation: random shifts move pixels by at most max_shift, fill with zeros, and are seeded."""

from __future__ import annotations

import torch

from overlooked.augment import random_shift


def test_shift_moves_a_single_pixel_within_bounds():
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(y.sum(dim=(1, 2, 3)), torch.ones(64))  # nothing falls off a centred pixel
    pos = y[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets vary


def test_shift_is_exact_translation_with_zero_fill():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    gen = torch.Generator().manual_seed(1)
    off = torch.randint(-1, 2, (1, 2), generator=torch.Generator().manual_seed(1))
    y = random_shift(x, 1, gen)
    dy, dx = off[0].tolist()
    expected = torch.zeros_like(x)
    for r in range(4):
        for c in range(4):
            if 0 <= r - dy < 4 and 0 <= c - dx < 4:
                expected[0, 0, r, c] = x[0, 0, r - dy, c - dx]
    assert torch.equal(y, expected)


def test_seeded():
    x = torch.rand(8, 1, 6, 6)
    a = random_shift(x, 2, torch.Generator().manual_seed(5))
    b = random_shift(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)

"""Augmentation: random shifts move pixels by at most max_shift, fill with zeros, and are seeded."""

from __future__ import annotations

import pytest
import torch

from overlooked.augment import RandomCrop, random_crop, random_shift


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


def test_random_crop_cuts_a_patch_of_each_image_at_every_offset_seeded():
    """Each output is the image's own size x size block at some offset; over many draws every offset occurs;
    the same generator seed gives the same crops."""
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float64).view(2, 3, 6, 6).repeat(200, 1, 1, 1)  # [400, 3, 6, 6]
    out = random_crop(images, 4, torch.Generator().manual_seed(1))
    assert out.shape == (400, 3, 4, 4)
    seen = set()
    for x, y in zip(images, out):
        match = [(t, l) for t in range(3) for l in range(3) if torch.equal(x[:, t : t + 4, l : l + 4], y)]
        assert len(match) == 1  # one block of the image, all channels alike
        seen.add(match[0])
    assert seen == {(t, l) for t in range(3) for l in range(3)}
    assert torch.equal(out, random_crop(images, 4, torch.Generator().manual_seed(1)))
    assert torch.equal(random_crop(images, 6, torch.Generator().manual_seed(1)), images)  # the whole image: itself
    with pytest.raises(ValueError, match=r"random_crop: size=7 must be a whole number of pixels from 1 to the images' side \(6x6\)"):
        random_crop(images, 7, torch.Generator())


def test_random_crop_brightness_and_contrast_stay_in_their_ranges():
    """brightness b adds one delta in [-b, b] per image; contrast c scales each channel about its mean by one
    factor in [1 - c, 1 + c] per image (tf.image.adjust_contrast's form)."""
    torch.manual_seed(0)
    images = torch.randn(500, 2, 8, 8, dtype=torch.float64)
    plain = random_crop(images, 5, torch.Generator().manual_seed(3))
    bright = random_crop(images, 5, torch.Generator().manual_seed(3), brightness=0.5)
    delta = bright - plain  # the same offsets (drawn first), then one shift per image
    assert torch.allclose(delta, delta[:, :1, :1, :1].expand_as(delta))
    assert delta[:, 0, 0, 0].abs().max() <= 0.5 and delta[:, 0, 0, 0].max() > 0.45 and delta[:, 0, 0, 0].min() < -0.45  # both ways
    contr = random_crop(images, 5, torch.Generator().manual_seed(3), contrast=0.3)
    mean = plain.mean(dim=(2, 3), keepdim=True)
    factor = (contr - mean) / (plain - mean)
    f = factor[:, 0, 0, 0]
    assert torch.allclose(factor, f[:, None, None, None].expand_as(factor))  # one factor per image, both channels
    assert torch.allclose(contr.mean(dim=(2, 3)), plain.mean(dim=(2, 3)))  # the mean stays
    assert f.min() >= 0.7 - 1e-9 and f.max() <= 1.3 + 1e-9 and f.min() < 0.75 and f.max() > 1.25
    wide = random_crop(images, 5, torch.Generator().manual_seed(3), contrast=2.0)  # c > 1: factors in [0, 1 + c], never negative
    f = ((wide - mean) / (plain - mean))[:, 0, 0, 0]
    assert f.min() >= -1e-9 and f.max() <= 3.0 + 1e-9 and f.min() < 0.1 and f.max() > 2.9
    for bad in ({"size": 0}, {"brightness": -1}, {"contrast": float("nan")}):
        with pytest.raises(ValueError, match="random_crop: "):
            RandomCrop(**bad)


def test_a_shift_of_the_whole_side_is_refused():
    from overlooked.errors import InputError

    with pytest.raises(InputError, match=r"0 <= max_shift < 4"):
        random_shift(torch.zeros(2, 1, 4, 4), 4, torch.Generator().manual_seed(0))
    assert random_shift(torch.zeros(2, 1, 4, 4), 3, torch.Generator().manual_seed(0)).shape == (2, 1, 4, 4)  # one less is fine

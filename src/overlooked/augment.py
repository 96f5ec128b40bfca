"""Training-time augmentations, by name. Each is ``aug(batch, generator) -> batch`` and is applied to the
training split only. The generator is passed in by the trainer, so resuming restores it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from overlooked.checks import is_count
from overlooked.errors import InputError
from overlooked.registry import AUGMENTATIONS


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by an integer offset in [-max_shift, max_shift] per axis, filling with zeros.

    This is the CapsNet paper's only augmentation (shifts of up to 2 pixels with zero padding).

    Args:
        images: ``[B, C, H, W]``.
        max_shift: largest shift in pixels.
        generator: source of the offsets.

    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 1
    >>> y = random_shift(x, 1, torch.Generator().manual_seed(0))
    >>> float(y.sum())
    1.0
    """
    b, _, h, w = images.shape
    if not is_count(max_shift, least=0) or max_shift >= min(h, w):  # a shift of the whole side moves the digit out of frame
        raise InputError(f"random_shift: max_shift must be a whole number of pixels, 0 <= max_shift < {min(h, w)} (the image side); got {max_shift!r}")
    if max_shift == 0:
        return images
    offsets = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator)  # [B, 2] (dy, dx)
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift))  # [B, C, H+2s, W+2s]
    rows = (torch.arange(h)[None, :] + max_shift - offsets[:, :1])  # [B, H]
    cols = (torch.arange(w)[None, :] + max_shift - offsets[:, 1:])  # [B, W]
    idx_b = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


class RandomShift:
    """Batch augmentation wrapper around :func:`random_shift` for the key ``key``."""

    def __init__(self, max_shift: int = 2, key: str = "image"):
        if not is_count(max_shift, least=0):
            raise InputError(f"random_shift: max_shift must be a whole number of pixels >= 0, got {max_shift!r}")
        self.max_shift = int(max_shift)
        self.key = key

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**batch, self.key: random_shift(batch[self.key], self.max_shift, generator)}


@AUGMENTATIONS.register("random_shift")
def build_random_shift(max_shift: int = 2, key: str = "image") -> RandomShift:
    """Random integer translation with zero fill (CapsNet: up to 2 px)."""
    return RandomShift(max_shift=max_shift, key=key)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator, brightness: float = 0.0, contrast: float = 0.0) -> torch.Tensor:
    """A random ``size`` x ``size`` patch of each image, then (when asked) a random brightness and contrast:
    smallNORB's training augmentation in Hinton et al. (2018, section 5), who give no magnitudes.

    Args:
        images: ``[B, C, H, W]`` with ``H, W >= size``.
        size: the patch side (32 in the paper).
        generator: source of the offsets and factors.
        brightness: each image gets ``+ delta``, ``delta ~ U[-brightness, brightness]`` (0: off).
        contrast: each image's channels are scaled about their own mean by ``f ~ U[max(0, 1 - contrast), 1 + contrast]``
            (0: off), as ``tf.image.adjust_contrast`` does.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> y = random_crop(x, 2, torch.Generator().manual_seed(0))
    >>> y.shape, bool((y[0, 0, 1, 0] - y[0, 0, 0, 0]) == 4)  # a contiguous patch of the image
    (torch.Size([1, 1, 2, 2]), True)
    """
    b, _, h, w = images.shape
    if not (isinstance(size, int) and 1 <= size <= min(h, w)):
        raise ValueError(f"random_crop: size={size!r} must be a whole number of pixels from 1 to the images' side ({h}x{w})")
    tops = torch.randint(0, h - size + 1, (b,), generator=generator)
    lefts = torch.randint(0, w - size + 1, (b,), generator=generator)
    rows = tops[:, None] + torch.arange(size)[None, :]  # [B, size]
    cols = lefts[:, None] + torch.arange(size)[None, :]
    out = images.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, C, size, size]
    if brightness:
        out = out + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1).to(out.dtype) * brightness
    if contrast:
        factor = (max(0.0, 1.0 - contrast) + torch.rand(b, 1, 1, 1, generator=generator) * (1.0 + contrast - max(0.0, 1.0 - contrast))).to(out.dtype)
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * factor + mean
    return out.contiguous()


class RandomCrop:
    """Batch augmentation wrapper around :func:`random_crop` for the key ``key``."""

    def __init__(self, size: int = 32, key: str = "image", brightness: float = 0.0, contrast: float = 0.0):
        if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise ValueError(f"random_crop: size must be a whole number >= 1 (pixels), got {size!r}")
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")):
                raise ValueError(f"random_crop: {name} must be a finite number >= 0 (0 turns it off), got {value!r}")
        self.size, self.key, self.brightness, self.contrast = size, key, float(brightness), float(contrast)

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**batch, self.key: random_crop(batch[self.key], self.size, generator, self.brightness, self.contrast)}


@AUGMENTATIONS.register("random_crop")
def build_random_crop(size: int = 32, key: str = "image", brightness: float = 0.0, contrast: float = 0.0) -> RandomCrop:
    """A random size x size patch per image, with optional random brightness and contrast (smallNORB in the EM
    capsules paper: 32x32 patches of 48x48 images; test images are the centre patch, ``smallnorb(crop=32)``)."""
    return RandomCrop(size=size, key=key, brightness=brightness, contrast=contrast)

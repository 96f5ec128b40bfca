"""Training-time augmentations, by name. Each is ``aug(batch, generator) -> batch`` and is applied to the
training split only. The generator is passed in by the trainer, so resuming restores it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
        self.max_shift = max_shift
        self.key = key

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {**batch, self.key: random_shift(batch[self.key], self.max_shift, generator)}


@AUGMENTATIONS.register("random_shift")
def build_random_shift(max_shift: int = 2, key: str = "image") -> RandomShift:
    """Random integer translation with zero fill (CapsNet: up to 2 px)."""
    return RandomShift(max_shift=max_shift, key=key)

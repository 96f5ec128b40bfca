"""A small generated classification set: noisy class prototypes. For smoke runs and tests, never results."""

from __future__ import annotations

import torch

from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.registry import DATASETS


@DATASETS.register("synthetic", seed_regenerates=True, downloads=())  # its seed draws the whole dataset, not only the held-out part
def synthetic(
    n_train: int = 512,
    n_test: int = 256,
    image_shape: tuple[int, ...] = (1, 12, 12),
    num_classes: int = 4,
    noise: float = 0.5,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Images ``prototype[label] + noise * N(0, 1)``, clipped to [0, 1]; deterministic given ``seed``.

    >>> s = synthetic(n_train=20, n_test=10)
    >>> len(s.train), len(s.val), len(s.test), tuple(s.train[torch.arange(2)]["image"].shape)
    (18, 2, 10, (2, 1, 12, 12))
    """
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(num_classes, *image_shape, generator=gen)  # [C, *shape]

    def draw(n: int) -> ArrayDataset:
        labels = torch.randint(0, num_classes, (n,), generator=gen)  # [n]
        images = (protos[labels] + noise * torch.randn(n, *image_shape, generator=gen)).clamp(0, 1)
        return ArrayDataset({"image": images.float(), "label": labels})

    full, test = draw(n_train), draw(n_test)
    tr, va = split_train_val(n_train, val_fraction, seed)
    return Splits(full.subset(tr), full.subset(va), test, ("image",), "label", {"num_classes": num_classes, "image_shape": tuple(image_shape), "name": "synthetic"})

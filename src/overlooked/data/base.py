"""Datasets as dictionaries of equally long tensors, and the train/validation/test bundle.

Every dataset in the library is an :class:`ArrayDataset`: a dict of tensors that share their first
dimension. Indexing with a tensor of indices returns a batch dict in one gather, which is far faster on a
2-core CPU than collating single items. A :class:`Splits` bundles the three splits with the metadata a
model needs (``num_classes``, vocabulary sizes, ...), and names which keys are model inputs and which is
the target.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from overlooked.errors import DataError


class ArrayDataset:
    """A map-style dataset backed by a dict of tensors with a common first dimension.

    Args:
        tensors: name -> tensor ``[N, ...]``; all must have the same ``N``.

    >>> ds = ArrayDataset({"x": torch.arange(6).reshape(3, 2), "y": torch.tensor([0, 1, 0])})
    >>> len(ds), ds[torch.tensor([2, 0])]["y"].tolist()
    (3, [0, 0])
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        if not tensors:
            raise DataError("ArrayDataset needs at least one tensor")
        lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"ArrayDataset tensors differ in length: {lengths}; all must share dim 0")
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        """A new dataset holding the rows ``index`` (a 1-D tensor of indices)."""
        return ArrayDataset({k: v[index] for k, v in self.tensors.items()})


@dataclass
class Splits:
    """Train, validation and test splits plus what a model needs to know about them.

    Attributes:
        train, val, test: the three splits. ``val`` is always carved out of the training files.
        input_keys: batch keys passed, in order, as positional arguments to the model.
        target_key: batch key holding the integer class target.
        meta: dataset facts a model builder needs (``num_classes``, ``vocab_size``, ...).
    """

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    input_keys: tuple[str, ...]
    target_key: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def crops_train(self) -> bool:
        """Training images are kept larger than the model's input (``meta["train_image_shape"]`` differs from
        ``meta["image_shape"]``), for a random crop to cut (e.g. ``smallnorb(crop=32)``)."""
        stored, want = self.meta.get("train_image_shape"), self.meta.get("image_shape")
        return stored is not None and tuple(stored) != tuple(want)

    def scored(self, split: str) -> ArrayDataset:
        """The split as a model is scored on it. The same as ``getattr(self, split)``, except for training
        images kept larger than the model's input for a random crop (``meta["train_image_shape"]``, e.g.
        ``smallnorb(crop=32)``): scored on their centre patch, as validation and test images are."""
        data = getattr(self, split)
        if split != "train" or not self.crops_train:
            return data
        key = self.input_keys[0]
        return ArrayDataset({**data.tensors, key: center_crop(data.tensors[key], int(self.meta["image_shape"][-1]))})


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` patch of ``[N, C, H, W]`` images (the EM paper's test-time crop).

    >>> center_crop(torch.arange(16.0).view(1, 1, 4, 4), 2)[0, 0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
    """
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size].contiguous()


def check_seed(seed: object, what: str = "data.kwargs.seed") -> int:
    """A dataset's seed: a whole number in ``[-2**63, 2**64)``, the range ``torch.Generator.manual_seed`` takes
    (``2**70`` was "Overflow when unpacking long long"), as an int.

    >>> check_seed(7)
    7
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not -(2**63) <= seed < 2**64:
        raise DataError(f"{what} must be a whole number in [-2**63, 2**64) (what torch's generators take), got {seed!r}")
    return int(seed)


def split_train_val(
    n: int, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of ``range(n)`` into train and validation indices.

    Args:
        n: number of training examples.
        val_fraction: fraction held out for validation, in [0, 1).
        seed: seed of the permutation; the same seed always gives the same split.

    Returns:
        ``(train_idx, val_idx)``, each sorted ascending.

    >>> tr, va = split_train_val(10, 0.2, seed=0)
    >>> len(tr), len(va), sorted(tr.tolist() + va.tolist()) == list(range(10))
    (8, 2, True)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = int(round(n * val_fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values

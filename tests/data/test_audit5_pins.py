"""Pins for MultiMNIST's per-split hash seeds and the spiking demo's data slices (audit 5)."""

from __future__ import annotations

import torch

from overlooked.data import multimnist
from overlooked.data.base import ArrayDataset, Splits
from overlooked.spiking.demo import slice_splits


def _class_coded_digits():
    """20 digits, two per class; class c's digit is a constant 8x8 block of (c + 1) / 10 (its intensity names it)."""
    labels = torch.arange(20) % 10
    images = torch.zeros(20, 28, 28)
    images[:, 10:18, 10:18] = ((labels + 1) / 10).view(20, 1, 1)
    return images, labels


def test_multimnist_splits_hash_train_val_and_test_with_three_different_seeds(monkeypatch):
    """seed=5: the pairs are hashed with seeds 3 x 5 = 15 (train), 16 (validation), 17 (test)."""
    images, labels = _class_coded_digits()
    images = (images * 255).to(torch.uint8).repeat(5, 1, 1)
    labels = labels.repeat(5)
    monkeypatch.setattr(multimnist, "ensure_mnist", lambda *a: None)
    monkeypatch.setattr(multimnist, "load_mnist", lambda split, *a: (images, labels))
    splits = multimnist.multimnist(n_train=4, n_val=4, n_test=4, val_fraction=0.5, seed=5)
    assert (splits.train.seed, splits.val.seed, splits.test.seed) == (15, 16, 17)


def test_spiking_demo_slices_each_split_from_itself():
    """slice_splits(train=3, val=2, test=1) keeps the first 3 training, 2 validation and 1 test examples, each
    from its own split (markers 0.., 100.., 200..)."""
    def ds(start, n):
        return ArrayDataset({"image": torch.arange(start, start + n).float(), "label": torch.zeros(n, dtype=torch.long)})

    splits = Splits(ds(0, 10), ds(100, 10), ds(200, 10), ("image",), "label", {})
    out = slice_splits(splits, 3, 2, 1)
    assert out.train.tensors["image"].tolist() == [0.0, 1.0, 2.0]
    assert out.val.tensors["image"].tolist() == [100.0, 101.0]
    assert out.test.tensors["image"].tolist() == [200.0]

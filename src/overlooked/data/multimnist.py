"""MultiMNIST as Sabour et al. 2017 (§6) build it, generated on the fly and deterministically from a seed.

Each example overlays two MNIST digits of *different* classes, each shifted by up to 4 pixels in each
direction on a 36x36 canvas (28 + 2 x 4), by the pixel-wise maximum. Example ``k`` of a split is a pure
function of ``(seed, k)``: a counter-based hash draws its two digits and four shifts, so no pair is stored,
any index can be regenerated, and the same seed always gives the same pairs. Training pairs use the MNIST
training digits outside the validation split, validation pairs the validation digits, and test pairs MNIST
*test* digits only. The paper trained on 60M pairs; ``n_train`` sets how many distinct pairs one epoch holds.

Batches hold ``"image"`` ``[B, 1, 36, 36]``, ``"label"`` the multi-hot ``[B, 10]``, ``"labels"`` the two
classes ``[B, 2]``, and ``"image_a"``, ``"image_b"`` each digit alone at its shift (reconstruction targets).
The paper's metric is :func:`overlooked.objectives.both_correct`: the two most active classes are exactly the two digits.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from overlooked.checks import is_count
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.data.mnist import ensure_mnist, load_mnist
from overlooked.errors import DataError
from overlooked.objectives import both_correct  # noqa: F401  (the metric lives beside the losses; re-exported)
from overlooked.registry import DATASETS

SIDE, DIGIT, MAX_SHIFT, NUM_CLASSES = 36, 28, 4, 10
_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def hash_uniform(seed: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform float64 in [0, 1) from ``(seed, index, stream)``: splitmix64 of a unique counter (wrapping int64).

    >>> u = hash_uniform(0, torch.arange(4), 0)
    >>> bool(((u >= 0) & (u < 1)).all()), torch.equal(u, hash_uniform(0, torch.arange(4), 0))
    (True, True)
    """
    x = (index.to(torch.int64) * 16 + stream) * _GOLDEN + _signed(seed * 0xD1B54A32D192ED03)
    x = x + _GOLDEN
    x = (x ^ _lsr(x, 30)) * _MIX1
    x = (x ^ _lsr(x, 27)) * _MIX2
    x = x ^ _lsr(x, 31)
    return _lsr(x, 11).to(torch.float64) / float(1 << 53)


def place(digits: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, side: int = SIDE) -> torch.Tensor:
    """Put 28x28 ``digits`` ``[B, 28, 28]`` at the centre of a ``side`` canvas shifted by ``(dy, dx)`` pixels
    (|shift| <= (side - 28) / 2), zero elsewhere -> ``[B, side, side]``."""
    pad = (side - digits.shape[-1]) // 2
    canvas = F.pad(digits, (pad, pad, pad, pad))  # [B, side, side], digit centred
    rows = (torch.arange(side)[None, :] - dy[:, None]) % side  # [B, side]: no wrap reaches the digit
    cols = (torch.arange(side)[None, :] - dx[:, None]) % side
    return canvas[torch.arange(len(digits))[:, None, None], rows[:, :, None], cols[:, None, :]]


class MultiMNISTPairs:
    """``n`` MultiMNIST examples from ``images`` ``[N, 28, 28]`` (float in [0, 1]) and ``labels`` ``[N]``,
    generated on indexing. Indexed with a tensor of example indices, it returns a batch dict."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n: int, seed: int, max_shift: int = MAX_SHIFT):
        self.images, self.labels, self.n, self.seed, self.max_shift = images, labels, n, seed, max_shift
        self.order = torch.argsort(labels, stable=True)  # digit indices grouped by class
        counts = torch.bincount(labels, minlength=NUM_CLASSES)
        if (counts == 0).any():
            absent = (counts == 0).nonzero().flatten().tolist()
            raise DataError(
                f"MultiMNIST pairs digits of different classes, and the source split holds {len(labels)} digits with none of "
                f"class(es) {absent}" + (" (an empty split: give data.val_fraction > 0)" if len(labels) == 0 else "")
            )
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts

    def __len__(self) -> int:
        return self.n

    def source_tensors(self) -> dict[str, torch.Tensor]:
        """What the pairs are a function of (digits, labels, count, seed, shift): the data fingerprint hashes it."""
        return {"images": self.images, "labels": self.labels, "params": torch.tensor([self.n, self.seed, self.max_shift])}

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        """Examples ``index`` generated now and held as tensors (used for ``train.eval_limit``)."""
        return ArrayDataset(self[torch.as_tensor(index).reshape(-1)])

    def __getitem__(self, index: torch.Tensor | int) -> dict[str, torch.Tensor]:
        k = torch.as_tensor(index).reshape(-1)
        if k.numel() and (int(k.min()) < -self.n or int(k.max()) >= self.n):  # as a tensor of n examples would
            bad = k[(k < -self.n) | (k >= self.n)][:3].tolist()
            raise IndexError(f"MultiMNIST index {bad} out of range for {self.n} examples")
        k = torch.where(k < 0, k + self.n, k)
        u = [hash_uniform(self.seed, k, s) for s in range(7)]
        first = (u[0] * len(self.labels)).long()  # [B]
        cls_a = self.labels[first]
        cls_b = (cls_a + 1 + (u[1] * (NUM_CLASSES - 1)).long()) % NUM_CLASSES  # a different class, uniformly
        second = self.order[self.starts[cls_b] + (u[2] * self.counts[cls_b]).long()]
        span = 2 * self.max_shift + 1
        dy_a, dx_a, dy_b, dx_b = ((v * span).long() - self.max_shift for v in u[3:7])
        a = place(self.images[first], dy_a, dx_a)  # [B, 36, 36]
        b = place(self.images[second], dy_b, dx_b)
        labels = torch.stack([cls_a, cls_b], 1)  # [B, 2]
        multi_hot = F.one_hot(cls_a, NUM_CLASSES) + F.one_hot(cls_b, NUM_CLASSES)
        out = {"image": torch.maximum(a, b).unsqueeze(1), "label": multi_hot.float(), "labels": labels, "image_a": a.unsqueeze(1), "image_b": b.unsqueeze(1)}
        return out if torch.as_tensor(index).dim() else {key: v[0] for key, v in out.items()}


@DATASETS.register("multimnist", downloads=("mnist",))
def multimnist(
    data_dir: str | os.PathLike[str] | None = None,
    n_train: int = 60_000,
    n_val: int = 10_000,
    n_test: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    verify: bool = True,
) -> Splits:
    """MultiMNIST splits generated on the fly (see the module docstring). ``seed`` fixes the validation split
    of the MNIST digits and every pair; the three splits use different hash seeds. ``verify``: check the
    MNIST files' checksums at every load (the default)."""
    bad = [f"{k}={v!r}" for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)) if not is_count(v)]
    if bad:
        raise DataError(f"multimnist: {', '.join(bad)}: the number of generated pairs per split must be a whole number >= 1")
    check = ensure_mnist(data_dir, download, verify)
    train_images, train_labels = load_mnist("train", data_dir, False, check)
    test_images, test_labels = load_mnist("test", data_dir, False, check)
    train_images, test_images = train_images.float() / 255.0, test_images.float() / 255.0
    tr, va = split_train_val(len(train_labels), val_fraction, seed)
    return Splits(
        train=MultiMNISTPairs(train_images[tr], train_labels[tr], n_train, 3 * seed),
        val=MultiMNISTPairs(train_images[va], train_labels[va], n_val, 3 * seed + 1),
        test=MultiMNISTPairs(test_images, test_labels, n_test, 3 * seed + 2),
        input_keys=("image",),
        target_key="label",
        meta={"num_classes": NUM_CLASSES, "image_shape": (1, SIDE, SIDE), "name": "multimnist", "metric": "both_correct"},
    )

"""smallNORB (LeCun, Huang, Bottou 2004), for users who have the files: a reader of its binary matrix format
and the splits Hinton et al. 2018 use (downsampled, both stereo views as channels).

Files, under ``<data root>/smallnorb/``: ``smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat.gz`` and
``smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat.gz``, as https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/
serves them (``overlooked data fetch smallnorb`` downloads and checks them; ``download=True`` does it on
first use). Gunzipped copies (the same names without ``.gz``) are read when present. The format: little-endian int32 magic
(``0x1E3D4C55`` bytes, ``0x1E3D4C54`` int32), int32 ``ndim``, then ``max(ndim, 3)`` int32 dimensions, then
the data in row-major order.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, center_crop, split_train_val
from overlooked.errors import ConfigError, DataError
from overlooked.registry import DATASETS

MAGIC_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64}
FILES = {
    "train": "smallnorb-5x46789x9x18x6x2x96x96-training-{}.mat",
    "test": "smallnorb-5x01235x9x18x6x2x96x96-testing-{}.mat",
}
NUM_CLASSES = 5


def read_norb_matrix(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one NORB binary matrix file (gunzipped on the fly when its name ends in ``.gz``) into a numpy
    array of its stored type and shape."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: not a readable gzip file ({err}); delete it and fetch it again (overlooked data fetch smallnorb)") from None
    if len(raw) < 20:
        raise DataError(f"{path}: {len(raw)} bytes is too short for a NORB matrix header")
    magic, ndim = np.frombuffer(raw[:8], "<i4")
    if int(magic) not in MAGIC_DTYPES:
        raise DataError(f"{path}: unknown NORB magic {int(magic):#x}; expected one of {[hex(m) for m in MAGIC_DTYPES]}")
    n_dims_stored = max(int(ndim), 3)
    header = 8 + 4 * n_dims_stored
    shape = tuple(int(d) for d in np.frombuffer(raw[8:header], "<i4")[: int(ndim)])
    dtype = np.dtype(MAGIC_DTYPES[int(magic)]).newbyteorder("<")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def load_smallnorb_split(split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images [N, 2, 96, 96] uint8, labels [N] int64, info [N, 4] int64)`` of ``split`` ('train' or 'test').

    Reads the gunzipped ``.mat`` files when all three are there, else the ``.mat.gz`` files the store
    fetches (``download=True`` fetches and checks missing ones; otherwise a missing file is a
    :class:`DataError` naming it and the fix). ``verify`` (default) checks the ``.mat.gz`` files' sha256 at
    every load (gunzipped copies have no published checksum and are read as they are).
    """
    root = store.resolve_data_dir(data_dir)
    plain = {kind: root / "smallnorb" / FILES[split].format(kind) for kind in ("dat", "cat", "info")}
    if all(p.is_file() for p in plain.values()):
        paths = plain
    else:
        rel = {kind: f"smallnorb/{FILES[split].format(kind)}.gz" for kind in plain}
        store.ensure("smallnorb", data_dir, download, files=list(rel.values()), verify_checksums=verify or download)
        paths = {kind: root / r for kind, r in rel.items()}
    images = torch.from_numpy(read_norb_matrix(paths["dat"]).copy())
    labels = torch.from_numpy(read_norb_matrix(paths["cat"]).astype(np.int64))
    info = torch.from_numpy(read_norb_matrix(paths["info"]).astype(np.int64))
    n = labels.shape[0]  # what the three files must agree on (a swapped or foreign file is named)
    if images.dim() != 4 or tuple(images.shape[1:2]) != (2,):
        raise DataError(f"{paths['dat']}: expected stereo images [N, 2, H, W], found shape {list(images.shape)}; is it the -dat file of this split?")
    if labels.dim() != 1 or images.shape[0] != n or info.shape[0] != n:
        raise DataError(f"{paths['cat']}, {paths['dat']}, {paths['info']}: they hold {list(labels.shape)} labels, {images.shape[0]} image pairs and {info.shape[0]} info rows; the three files of one split must match")
    if n and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise DataError(f"{paths['cat']}: labels must be 0..{NUM_CLASSES - 1} (smallNORB's five categories), found {int(labels.min())}..{int(labels.max())}")
    return images, labels, info


def _prepare(images: torch.Tensor, size: int, normalize: bool = False) -> torch.Tensor:
    """uint8 ``[N, 2, 96, 96]`` -> float ``[N, 2, size, size]`` in [0, 1] (area downsampling); with
    ``normalize``, each view of each pair (each camera's image) to zero mean and unit variance, as Hinton et al.
    (2018, section 5) normalise each image."""
    out = torch.cat([F.interpolate(c.float() / 255.0, size=(size, size), mode="area") for c in images.split(2048)])  # bounded memory
    if normalize:
        mean = out.mean(dim=(2, 3), keepdim=True)
        std = out.std(dim=(2, 3), keepdim=True, unbiased=False).clamp_min(1e-6)  # a blank view stays zero, not NaN
        out = (out - mean) / std
    return out


@DATASETS.register("smallnorb", downloads=("smallnorb",))
def smallnorb(
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int = 48,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    verify: bool = True,
    normalize: bool = True,
    crop: int | None = None,
) -> Splits:
    """smallNORB as Hinton et al. (2018, section 5) feed it: both stereo views as two channels, downsampled to
    ``image_size`` (48), each view normalised to zero mean and unit variance (``normalize``; False keeps [0, 1]);
    a seeded validation split of the training set.

    ``crop`` (32 in the paper): validation and test images are their central ``crop`` x ``crop`` patch and the
    data's ``image_shape`` is ``(2, crop, crop)``, the model's input; training images stay ``image_size`` for the
    ``random_crop`` augmentation (``augment: {name: random_crop, kwargs: {size: 32}}``) to cut a random patch
    from each (with its random brightness and contrast). A run with ``crop`` and no such augmentation is refused
    before it starts (:func:`overlooked.api.check_transforms`).
    """
    if crop is not None and not (isinstance(crop, int) and not isinstance(crop, bool) and 1 <= crop <= image_size):
        raise ConfigError(f"smallnorb: crop={crop!r} must be a whole number of pixels from 1 to image_size={image_size} (32 in the paper), or None for whole images")
    train_images, train_labels, _ = load_smallnorb_split("train", data_dir, download, verify)
    test_images, test_labels, _ = load_smallnorb_split("test", data_dir, download, verify)
    full = ArrayDataset({"image": _prepare(train_images, image_size, normalize), "label": train_labels})
    tr, va = split_train_val(len(full), val_fraction, seed)
    test = _prepare(test_images, image_size, normalize)
    val = full.subset(va)
    meta: dict[str, object] = {"num_classes": NUM_CLASSES, "image_shape": (2, image_size, image_size), "name": "smallnorb"}
    if crop is not None:
        val = ArrayDataset({"image": center_crop(val.tensors["image"], crop), "label": val.tensors["label"]})
        test = center_crop(test, crop)
        meta.update(image_shape=(2, crop, crop), train_image_shape=(2, image_size, image_size))
    return Splits(
        train=full.subset(tr),
        val=val,
        test=ArrayDataset({"image": test, "label": test_labels}),
        input_keys=("image",),
        target_key="label",
        meta=meta,
    )

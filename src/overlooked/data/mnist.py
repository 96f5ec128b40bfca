"""MNIST (LeCun et al. 1998): 60,000 training and 10,000 test digits, 28x28 uint8, from IDX files.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header, then the raw bytes:

    bytes 0-1  zero
    byte  2    data type (0x08 = unsigned byte, the only type MNIST uses)
    byte  3    number of dimensions (3 for images, 1 for labels)
    then       one 4-byte big-endian size per dimension, then prod(sizes) data bytes

so images start with magic 0x00000803 and labels with 0x00000801. The loader reads the four ``.gz`` files
(:func:`read_idx` reads a raw IDX file too); a loaded file is checked by the md5 of its decompressed bytes (see :mod:`overlooked.data.store`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.errors import DataError
from overlooked.registry import DATASETS

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UINT8 = 0x08  # the IDX data-type byte for unsigned bytes
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
FILES = {  # split -> (images, labels), relative to the data root
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
_FIX = (
    "The file is corrupt or not an MNIST IDX file: run `overlooked data fetch mnist` to replace it with a "
    "verified copy, or set OVERLOOKED_DATA / --data-dir to a folder that holds mnist/ (`overlooked data verify mnist` lists the files)."
)
_MAGIC_NAMES = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


def _read_decompressed(path: Path) -> tuple[bytes, bool]:
    """The IDX bytes of ``path`` (gunzipped when it is gzip) and whether it was gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"MNIST file {path} does not exist (looked in folder {path.parent}). Fix: run "
            "`overlooked data fetch mnist` or set OVERLOOKED_DATA / --data-dir to a folder that holds mnist/ (`overlooked data verify mnist` lists the files)."
        ) from None
    except OSError as err:
        raise DataError(f"cannot read MNIST file {path}: {err}") from None
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            found = raw[:2].hex(" ") or "an empty file"
            raise DataError(f"{path}: expected gzip data (bytes 1f 8b at byte offset 0), found {found}. {_FIX}")
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip data ({err}); expected a complete, valid gzip stream. {_FIX}") from None


def parse_idx(data: bytes, source: str = "<bytes>", expected_magic: int | None = None) -> torch.Tensor:
    """Parse uncompressed IDX bytes holding unsigned bytes.

    Args:
        data: the whole IDX content.
        source: what to call the data in error messages (a file name).
        expected_magic: :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC` to require; None accepts either.

    Returns:
        uint8 tensor of the shape the header declares, e.g. images ``[N, 28, 28]`` or labels ``[N]``.

    Raises:
        DataError: wrong magic, truncated header or data, or bytes after the data; the message gives the
            byte offset and what was expected and found.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    tensor([7, 8, 9], dtype=torch.uint8)
    """
    allowed = (expected_magic,) if expected_magic is not None else tuple(_MAGIC_NAMES)
    if len(data) < 4:
        raise _idx_error(source, len(data), "a 4-byte magic number", f"end of data after {len(data)} byte(s)")
    magic = int.from_bytes(data[:4], "big")
    if magic not in allowed:
        wanted = " or ".join(f"0x{m:08x} ({_MAGIC_NAMES[m]})" for m in allowed)
        raise _idx_error(source, 0, f"magic {wanted}", f"0x{magic:08x}")
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise _idx_error(source, len(data), f"a {header_len}-byte header with {ndim} dimension sizes", "end of data")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(dims)
    payload = len(data) - header_len
    if payload < count:
        raise _idx_error(
            source, len(data), f"{count} data bytes after the header for dims {dims}", f"only {payload} (truncated)"
        )
    if payload > count:
        expected = f"end of data after {count} bytes for dims {dims}"
        raise _idx_error(source, header_len + count, expected, f"{payload - count} extra byte(s)")
    values = np.frombuffer(data, dtype=np.uint8, count=count, offset=header_len)  # [prod(dims)]
    return torch.from_numpy(values.copy()).reshape(dims)  # [*dims]


def _idx_error(source: str, offset: int, expected: str, found: str) -> DataError:
    return DataError(f"{source}: invalid IDX data at byte offset {offset}: expected {expected}, found {found}. {_FIX}")


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> torch.Tensor:
    """Read an IDX file of unsigned bytes, gzipped or raw.

    Args:
        path: the ``.gz`` or raw IDX file.
        expected_magic: :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC` to require; None accepts either.

    Returns:
        uint8 tensor of the declared shape (images ``[N, 28, 28]``, labels ``[N]``).

    Raises:
        DataError: the file is missing, is corrupt gzip, or is not valid IDX (see :func:`parse_idx`). For a
            gzipped file, byte offsets count in the decompressed data.
    """
    path = Path(path)
    data, was_gzip = _read_decompressed(path)
    source = f"{path} (decompressed)" if was_gzip else str(path)
    return parse_idx(data, source, expected_magic)


def _load_checked(root: Path, relpath: str, magic: int, verify: bool) -> torch.Tensor:
    path = root / relpath
    data, was_gzip = _read_decompressed(path)
    tensor = parse_idx(data, f"{path} (decompressed)" if was_gzip else str(path), magic)
    if verify:
        expected = store.expected_check("mnist", relpath).digest
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found != expected:
            raise DataError(
                f"checksum mismatch for MNIST file {path}: md5 of the decompressed IDX data expected {expected}, "
                f"found {found}. {_FIX}"
            )
    return tensor


def ensure_mnist(data_dir: str | Path | None, download: bool, verify: bool) -> bool:
    """Check (or, with ``download``, fetch) the files of both splits before a dataset reads either, so that a
    missing-file error names all of them, not only the training split's.

    Returns:
        The ``verify`` to load them with (``download`` is done): False when this call has just checked every
        checksum (``download`` and ``verify``: a corrupt file is re-fetched, which needs the check), so
        that the loads read each file without hashing it again.
    """
    store.ensure("mnist", data_dir, download, files=[*FILES["train"], *FILES["test"]], verify_checksums=download and verify)
    return verify and not download


def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: the data root holding ``mnist/``; see :func:`overlooked.data.store.resolve_data_dir`.
        download: fetch missing files instead of raising.
        verify: check the md5 of the decompressed files against the canonical values.

    Returns:
        ``(images, labels)``: uint8 ``[N, 28, 28]`` and int64 ``[N]`` with values 0..9.

    Raises:
        DataError: a file is missing, corrupt, fails its checksum, or images and labels disagree.
    """
    if split not in FILES:
        raise DataError(f"unknown MNIST split {split!r}; expected one of {', '.join(map(repr, FILES))}")
    images_rel, labels_rel = FILES[split]
    # With download=True the md5s are checked here (a corrupt file is re-fetched); otherwise when read below.
    root = store.ensure("mnist", data_dir, download, files=FILES[split], verify_checksums=download and verify)
    recheck = verify and not download  # each file hashed once either way
    images = _load_checked(root, images_rel, IMAGES_MAGIC, recheck)  # [N, 28, 28]
    labels = _load_checked(root, labels_rel, LABELS_MAGIC, recheck)  # [N]
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        found = list(images.shape)
        raise DataError(f"{root / images_rel}: expected images of shape [N, 28, 28], found {found}. {_FIX}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{root / images_rel} holds {images.shape[0]} images but {root / labels_rel} holds {labels.shape[0]} "
            f"labels; expected equal counts. {_FIX}"
        )
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{root / labels_rel}: expected labels 0..9, found {int(labels.max())}. {_FIX}")
    return images, labels.long()


@DATASETS.register("mnist", downloads=("mnist",))
def mnist(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    verify: bool = True,
) -> Splits:
    """MNIST as :class:`Splits`: a seeded ``val_fraction`` of the 60k training images, and the 10k test.

    Args:
        data_dir: the data root; see :func:`overlooked.data.store.resolve_data_dir`.
        val_fraction: fraction of the training images held out for validation.
        seed: seed of the train/validation split.
        download: fetch missing files instead of raising.
        verify: check the md5 of the decoded files (the default); ``False`` reads an edited copy as it is.

    Returns:
        Splits whose batches hold ``"image"`` float32 ``[B, 1, 28, 28]`` in [0, 1] and ``"label"`` int64 ``[B]``.
    """
    check = ensure_mnist(data_dir, download, verify)
    train_images, train_labels = load_mnist("train", data_dir, False, check)  # [60000, 28, 28], [60000]
    test_images, test_labels = load_mnist("test", data_dir, False, check)  # [10000, 28, 28], [10000]
    full_train = ArrayDataset({"image": _to_unit_float(train_images), "label": train_labels})
    train_idx, val_idx = split_train_val(len(full_train), val_fraction, seed)
    return Splits(
        train=full_train.subset(train_idx),
        val=full_train.subset(val_idx),
        test=ArrayDataset({"image": _to_unit_float(test_images), "label": test_labels}),
        input_keys=("image",),
        target_key="label",
        meta={"num_classes": NUM_CLASSES, "image_shape": (1, *IMAGE_SHAPE), "name": "mnist", "input_range": "pixel intensity / 255, in [0, 1]"},
    )


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float32 ``[N, 1, 28, 28]`` in [0, 1]."""
    return images.unsqueeze(1).to(torch.float32).div_(255.0)  # [N, 1, 28, 28]

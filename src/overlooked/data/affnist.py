"""affNIST-style data for the affine-robustness study of Sabour et al. 2017 (§5.2), and a reader for the real
affNIST ``.mat`` files.

"affNIST-style", not affNIST: training images are MNIST digits on a 40x40 canvas (centred by a 6-pixel
border, as affNIST's "just centered" version), randomly translated during training by the ``random_shift``
augmentation (``max_shift: 6``; see ``configs/capsnet_affnist.yaml``); validation images are translated once,
from a fixed seed; test images are the 10,000 MNIST *test* digits under random affine transformations drawn,
from a fixed seed, from the ranges of the affNIST page (https://www.cs.toronto.edu/~tijmen/affNIST/, Tijmen
Tieleman): see ``AFFNIST_RANGES``. The real affNIST test set is read by :func:`read_affnist_mat` (a ``.mat``
file, or the official ``test.mat.zip`` as served) and fetched, checksum verified, by the data store
(``overlooked data fetch affnist``); ``affnist_style(test_set="affnist")`` tests on it instead of on our own
transforms.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.data.mnist import ensure_mnist, load_mnist
from overlooked.errors import DataError
from overlooked.registry import DATASETS

CANVAS = 40  # affNIST images are 40x40
AFFNIST_TEST_FILE = "affnist/test.mat.zip"  # the official "transformed" test set, as the store fetches it
TEST_SETS = ("style", "affnist")
BORDER = (CANVAS - 28) // 2  # 6 px around a centred MNIST digit

# The transformation ranges of the affNIST page (URL above), as uniform ranges. [U]: these are the values as
# commonly quoted from that page (rotation within 20 degrees either way, shearing within 0.2 either way,
# scaling 0.8 to 1.2 along each axis, then a translation keeping the digit inside the 40x40 box); re-read the
# page before quoting them.
AFFNIST_RANGES = {
    "rotation_deg": (-20.0, 20.0),
    "shear": (-0.2, 0.2),
    "scale_x": (0.8, 1.2),
    "scale_y": (0.8, 1.2),
    "translate_x_px": (-float(BORDER), float(BORDER)),  # a 28 px digit stays inside the 40 px box at scale 1
    "translate_y_px": (-float(BORDER), float(BORDER)),
}


def on_canvas(images: torch.Tensor, side: int = CANVAS) -> torch.Tensor:
    """``[N, 28, 28]`` -> ``[N, 1, side, side]``, each digit centred on a zero background."""
    pad = (side - images.shape[-1]) // 2
    return F.pad(images, (pad, pad, pad, pad)).unsqueeze(1)


def translate(images: torch.Tensor, generator: torch.Generator, max_shift: int = BORDER) -> torch.Tensor:
    """Integer translation of ``[N, 1, S, S]`` by up to ``max_shift`` px per axis with zero fill (seeded)."""
    from overlooked.augment import random_shift

    return random_shift(images, max_shift, generator)


def sample_affine(n: int, generator: torch.Generator, ranges: dict[str, tuple[float, float]] = AFFNIST_RANGES) -> dict[str, torch.Tensor]:
    """Draw ``n`` transformations uniformly from ``ranges`` -> name -> ``[n]``."""
    return {k: lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64) for k, (lo, hi) in ranges.items()}


def affine_matrices(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``A = R(theta) Shear(s) Scale(sx, sy)`` plus translation, in pixels, as ``[n, 2, 3]`` (x, y order)."""
    th = params["rotation_deg"] * math.pi / 180
    c, s = torch.cos(th), torch.sin(th)
    sh, sx, sy = params["shear"], params["scale_x"], params["scale_y"]
    # R @ [[1, sh], [0, 1]] @ diag(sx, sy)
    a00, a01 = c * sx, (c * sh - s) * sy
    a10, a11 = s * sx, (s * sh + c) * sy
    tx, ty = params["translate_x_px"], params["translate_y_px"]
    return torch.stack([torch.stack([a00, a01, tx], -1), torch.stack([a10, a11, ty], -1)], -2)


def apply_affine(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Warp ``[N, 1, S, S]`` by pixel-space forward maps ``[N, 2, 3]`` about the image centre (bilinear,
    zero outside)."""
    N, _, S, _ = images.shape
    inv = torch.linalg.inv(matrices[:, :, :2])  # output -> input
    shift = -(inv @ matrices[:, :, 2:]) * (2.0 / S)  # pixel translation in normalised [-1, 1] units
    theta = torch.cat([inv, shift], 2).to(images.dtype)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affnist_style_test(images: torch.Tensor, seed: int) -> torch.Tensor:
    """MNIST ``[N, 28, 28]`` in [0, 1] -> affNIST-style ``[N, 1, 40, 40]`` under seeded affNIST-range transforms."""
    gen = torch.Generator().manual_seed(seed)
    return apply_affine(on_canvas(images), affine_matrices(sample_affine(len(images), gen))).clamp_(0, 1)


@DATASETS.register("affnist_style", downloads=("mnist", "affnist"))  # affnist only for test_set="affnist"
def affnist_style(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    test_set: str = "style",
    verify: bool = True,
) -> Splits:
    """Train: centred 40x40 MNIST (translate with ``random_shift`` max 6 in training); validation: translated
    once from ``seed``; test: MNIST test digits under affNIST-range affine transforms from ``seed``
    (``test_set="style"``), or the real affNIST test set (``test_set="affnist"``, read from
    ``affnist/test.mat.zip`` under the data root; ``download=True`` fetches it). ``verify``: check the files'
    checksums at every load (the default)."""
    if test_set not in TEST_SETS:
        raise DataError(f"affnist_style: unknown test_set {test_set!r}; use one of {', '.join(TEST_SETS)}")
    if test_set == "affnist":  # first: a missing affNIST file fails before MNIST is read
        test_images, test_labels = load_affnist_test(data_dir, download, verify)
        train_images, train_labels = load_mnist("train", data_dir, download, verify)
    else:
        check = ensure_mnist(data_dir, download, verify)  # both MNIST splits named at once when missing
        digits, test_labels = load_mnist("test", data_dir, False, check)
        test_images = affnist_style_test(digits.float() / 255.0, seed + 2)
        train_images, train_labels = load_mnist("train", data_dir, False, check)
    train_images = train_images.float() / 255.0
    tr, va = split_train_val(len(train_labels), val_fraction, seed)
    val = translate(on_canvas(train_images[va]), torch.Generator().manual_seed(seed + 1))
    return Splits(
        train=ArrayDataset({"image": on_canvas(train_images[tr]), "label": train_labels[tr]}),
        val=ArrayDataset({"image": val, "label": train_labels[va]}),
        test=ArrayDataset({"image": test_images, "label": test_labels}),
        input_keys=("image",),
        target_key="label",
        meta={"num_classes": 10, "image_shape": (1, CANVAS, CANVAS), "name": "affnist_style", "test_set": test_set},
    )


def _open_mat(path: Path) -> io.BytesIO | str:
    """A ``.mat`` file's path, or the bytes of the single ``.mat`` member of a ``.zip`` (as affNIST serves it)."""
    if not zipfile.is_zipfile(path):
        return str(path)
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.namelist() if m.lower().endswith(".mat") and not m.startswith("__MACOSX/")]
        if len(members) != 1:
            raise DataError(f"{path}: expected one .mat file inside the zip, found {members or 'none'}; use the official test.mat.zip of https://www.cs.toronto.edu/~tijmen/affNIST/")
        return io.BytesIO(zf.read(members[0]))


def read_affnist_mat(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one real affNIST ``.mat`` file (e.g. ``test.mat`` of the "transformed" version), or the ``.zip``
    holding it as served: the struct ``affNISTdata`` with ``image`` (1600 x N, uint8, column-major 40x40
    digits) and ``label_int`` (N).

    Returns:
        ``(images [N, 1, 40, 40] float32 in [0, 1], labels [N] int64)``.
    """
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as e:  # scipy is not a core dependency
        raise DataError("reading affNIST .mat files needs scipy: pip install 'overlooked[affnist]' (or pip install scipy)") from e
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such affNIST file. Get it with `overlooked data fetch affnist` or from https://www.cs.toronto.edu/~tijmen/affNIST/")
    try:
        mat = loadmat(_open_mat(path), squeeze_me=True, struct_as_record=True)
    except (MatReadError, ValueError, TypeError, IndexError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable affNIST .mat file ({type(e).__name__}: {e}); fetch it again with `overlooked data fetch affnist --force`") from e
    if "affNISTdata" not in mat:
        raise DataError(f"{path}: expected a struct 'affNISTdata', found {sorted(k for k in mat if not k.startswith('__'))}")
    data = mat["affNISTdata"]
    import numpy as np  # scipy's own dependency

    image = np.asarray(data["image"].item())
    image = image.reshape(-1, 1) if image.ndim == 1 else image  # squeeze_me drops N = 1 (one example) to [1600]
    images = torch.as_tensor(image.T.copy())  # [N, 1600]
    labels = torch.as_tensor(np.asarray(data["label_int"].item()).reshape(-1).astype("int64"))  # N = 1: a scalar
    if images.ndim != 2 or images.shape[1] != CANVAS * CANVAS or len(labels) != len(images):
        raise DataError(f"{path}: expected images 1600 x N and N labels, found images {tuple(images.shape[::-1])} and {len(labels)} labels")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:
        raise DataError(f"{path}: label_int must hold digits 0..9, found {int(labels.min())}..{int(labels.max())}")
    # each column is a 40x40 image stored row-major after the transpose above (as the public readers use it)
    return images.reshape(-1, 1, CANVAS, CANVAS).float() / 255.0, labels


def load_affnist_test(data_dir: str | os.PathLike[str] | None = None, download: bool = False, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The real affNIST test set (10,000 transformed MNIST test digits) from ``affnist/test.mat.zip`` under the
    data root; ``download=True`` fetches it from the affNIST page, otherwise a missing file is a
    :class:`DataError` naming it and the fix. ``verify`` (default) checks the file's sha256 before reading it,
    at every load; ``False`` reads it as it is."""
    root = store.ensure("affnist", data_dir, download, files=[AFFNIST_TEST_FILE], verify_checksums=verify or download)
    return read_affnist_mat(root / AFFNIST_TEST_FILE)

"""UCI Gas Sensor Array Drift at Different Concentrations (Vergara et al. 2012; Rodriguez-Lujan et al. 2014).

An electronic nose of 16 metal-oxide sensors, 8 features each (128 features), measured six gases over 36
months in 10 batches; the sensors drift, so a classifier trained on the first batch degrades on later ones.
Each ``batchN.dat`` holds one measurement per line, libsvm-like::

    <gas>;<concentration> 1:<f1> 2:<f2> ... 128:<f128>

Gas codes 1..6 (ethanol, ethylene, ammonia, acetaldehyde, acetone, toluene) become classes 0..5;
concentration is in ppmv.

Protocol (the customary one, see paper_numbers.md §4, where it is tagged [U] as Vergara et al.'s own):
train on batch 1, test on each later batch separately. Here the validation split is carved out of batch 1
(model selection never sees a later batch), the feature scaling (z-score per feature) is fitted on the
training part of batch 1 only and then applied unchanged to validation and every test batch, and the test
split carries a ``"batch"`` column named as ``group_key``, so evaluation reports accuracy per batch. The
staged data lacks batches 7 and 10 (MANIFEST §4.4); by default every later batch *present* is tested and the
absent ones are listed in ``meta["missing_batches"]``.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from overlooked.checks import repeated
from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.errors import DataError, DataWarning
from overlooked.registry import DATASETS

NUM_FEATURES = 128
NUM_BATCHES = 10
GASES = ("ethanol", "ethylene", "ammonia", "acetaldehyde", "acetone", "toluene")
FOLDER = "uci_gas_sensor_drift"
_FIX = "re-fetch with `overlooked data fetch uci_gas_sensor_drift`"


def batch_path(batch: int) -> str:
    """Path of batch ``batch`` relative to the data root.

    >>> batch_path(3)
    'uci_gas_sensor_drift/batch3.dat'
    """
    return f"{FOLDER}/batch{batch}.dat"


def _bad(source: str, lineno: int, why: str) -> DataError:
    return DataError(f"{source}, line {lineno}: {why}; {_FIX}")


def parse_line(line: str, source: str = "<string>", lineno: int = 1) -> tuple[int, float, list[float]]:
    """One measurement: ``(class 0..5, concentration in ppmv, 128 features)``.

    Strict: the label must be ``<gas 1-6>;<concentration>``, followed by exactly 128 ``index:value`` pairs
    with indices 1..128 in order and finite values. Anything else is a :class:`DataError` naming the source
    and line.

    >>> cls, conc, feats = parse_line("2;50.5 " + " ".join(f"{i}:{i / 2}" for i in range(1, 129)))
    >>> cls, conc, feats[0], feats[127], len(feats)
    (1, 50.5, 0.5, 64.0, 128)
    """
    tokens = line.split()
    if not tokens:
        raise _bad(source, lineno, "empty line")
    label = tokens[0].split(";")
    if len(label) != 2 or not label[0].isdigit() or not 1 <= int(label[0]) <= len(GASES):
        raise _bad(source, lineno, f"expected '<gas 1-6>;<concentration>' first, found {tokens[0]!r}")
    try:
        concentration = float(label[1])
    except ValueError:
        raise _bad(source, lineno, f"concentration {label[1]!r} is not a number") from None
    if not math.isfinite(concentration) or concentration < 0:
        raise _bad(source, lineno, f"concentration {label[1]!r} is not a finite non-negative number")
    if len(tokens) - 1 != NUM_FEATURES:
        raise _bad(source, lineno, f"expected {NUM_FEATURES} 'index:value' features, found {len(tokens) - 1}")
    features = []
    for i, token in enumerate(tokens[1:], 1):
        index, sep, value = token.partition(":")
        if not sep or index != str(i):
            raise _bad(source, lineno, f"feature {i}: expected '{i}:<value>', found {token!r}")
        try:
            v = float(value)
        except ValueError:
            raise _bad(source, lineno, f"feature {i}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            raise _bad(source, lineno, f"feature {i}: value {value!r} is not finite")
        features.append(v)
    return int(label[0]) - 1, concentration, features


def read_batch(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Parse one ``batchN.dat``: ``{"features": [N, 128] float64, "label": [N] int64, "concentration": [N]}``.

    Raises:
        DataError: the file is missing, empty, or has a malformed line (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing gas-sensor batch file {path}; {_FIX}")
    rows, lineno, blank = [], 0, None
    with open(path, encoding="ascii", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():  # blank lines are accepted at the end of the file only
                    blank = blank or lineno
                    continue
                if blank is not None:
                    parse_line("", str(path), blank)  # raises: an empty line between measurements
                rows.append(parse_line(line, str(path), lineno))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}, line {lineno + 1}: non-ASCII byte ({err.reason}); {_FIX}") from None
    if not rows:
        raise DataError(f"{path}: no measurements in the file; {_FIX}")
    return {
        "features": torch.tensor([r[2] for r in rows], dtype=torch.float64),
        "label": torch.tensor([r[0] for r in rows], dtype=torch.int64),
        "concentration": torch.tensor([r[1] for r in rows], dtype=torch.float64),
    }


def fit_standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation of ``x`` ``[N, F]`` (a constant feature gets std 1).

    >>> mean, std = fit_standardizer(torch.tensor([[0.0, 5.0], [2.0, 5.0]]))
    >>> mean.tolist(), std.tolist()
    ([1.0, 5.0], [1.0, 1.0])
    """
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _dataset(parts: dict[int, dict[str, torch.Tensor]], mean: torch.Tensor, std: torch.Tensor) -> ArrayDataset:
    """Concatenate batches, scale features with the training statistics, add the ``batch`` column."""
    feats = torch.cat([p["features"] for p in parts.values()])  # [N, 128]
    return ArrayDataset(
        {
            "features": ((feats - mean) / std).to(torch.float32),
            "label": torch.cat([p["label"] for p in parts.values()]),
            "concentration": torch.cat([p["concentration"] for p in parts.values()]).to(torch.float32),
            "batch": torch.cat([torch.full((len(p["label"]),), b, dtype=torch.int64) for b, p in parts.items()]),
        }
    )


def _batch_numbers(batches: Any, what: str) -> tuple[int, ...]:
    """``batches`` as a tuple of whole batch numbers; a string, a float or a bool is refused, not converted."""
    items = (batches,) if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__") else tuple(batches)
    bad = [b for b in items if isinstance(b, bool) or not isinstance(b, numbers.Integral)]
    if bad or isinstance(batches, (str, bytes)):
        raise DataError(f"{what} must be a list of whole batch numbers 1..{NUM_BATCHES}, e.g. [1] or [2, 3]; got {batches!r}")
    numbers_ = tuple(int(b) for b in items)
    twice = repeated(list(numbers_))
    if twice:  # read once but recorded twice in the run's meta
        raise DataError(f"{what} names batch(es) {twice} more than once; name each batch once")
    return numbers_


@DATASETS.register("gas_drift", downloads=("uci_gas_sensor_drift",))
def gas_drift(
    data_dir: str | None = None,
    train_batches: tuple[int, ...] = (1,),
    test_batches: tuple[int, ...] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    verify: bool = True,
) -> Splits:
    """Gas-sensor drift: train (and validate) on ``train_batches``, test per batch on ``test_batches``.

    Args:
        data_dir: the data root (see :func:`overlooked.data.store.resolve_data_dir`).
        train_batches: batches to train on (batch 1 in the customary protocol); validation comes from them.
        test_batches: batches to test on, each reported separately. ``None``: every batch after the last
            training batch whose file is present (all of them with ``download``); absent ones are listed in
            ``meta["missing_batches"]``. Naming a batch whose file is missing is an error.
        val_fraction: fraction of the training batches held out for validation (seeded).
        seed: seed of the validation split.
        download: fetch missing files from the official UCI archive.
        verify: check each batch file against the archive's sha256 before reading it (the default; about
            0.01 s); ``False`` reads the files as they are.

    Returns:
        :class:`Splits` with input ``"features"`` ``[N, 128]`` (z-scored with training statistics), target
        ``"label"`` (gas 0..5) and ``group_key`` ``"batch"``.
    """
    train_batches = _batch_numbers(train_batches, "train_batches")
    if not train_batches or any(not 1 <= b <= NUM_BATCHES for b in train_batches):
        raise DataError(f"train_batches must be batch numbers 1..{NUM_BATCHES}, got {train_batches}")
    root = store.ensure(FOLDER, data_dir, download, files=[batch_path(b) for b in train_batches], verify_checksums=verify)
    missing: list[int] = []
    if test_batches is None:
        later = range(max(train_batches) + 1, NUM_BATCHES + 1)
        if download:  # fetch every later batch; without download, test on those present
            store.ensure(FOLDER, root, download, files=[batch_path(b) for b in later], verify_checksums=verify)
        missing = [b for b in later if not (root / batch_path(b)).is_file()]
        test_batches = tuple(b for b in later if b not in missing)
        if not test_batches:
            raise DataError(
                f"no batch after the training batches {train_batches} to test on: "
                + (f"batch(es) {missing} are not in {root / FOLDER}" if missing else f"batch {NUM_BATCHES} is the last")
                + "; name test_batches, train on earlier batches, or fetch the missing ones (download=True)"
            )
    test_batches = _batch_numbers(test_batches, "test_batches")
    if not test_batches or any(not 1 <= b <= NUM_BATCHES for b in test_batches) or set(test_batches) & set(train_batches):
        raise DataError(f"test_batches must be batch numbers 1..{NUM_BATCHES} not used for training, got {test_batches} (training on {train_batches})")
    store.ensure(FOLDER, root, download, files=[batch_path(b) for b in test_batches], verify_checksums=verify)

    train_parts = {b: read_batch(root / batch_path(b)) for b in train_batches}
    full = _dataset(train_parts, torch.zeros(NUM_FEATURES, dtype=torch.float64), torch.ones(NUM_FEATURES, dtype=torch.float64))
    tr, va = split_train_val(len(full), val_fraction, seed)
    if len(tr) == 0:  # before the scaling statistics, whose std of nothing warned from torch first
        raise DataError(f"val_fraction={val_fraction} leaves no training measurement of the {len(full)} in batches {list(train_batches)}; lower val_fraction (0.1 by default)")
    raw = torch.cat([p["features"] for p in train_parts.values()])  # [N, 128] float64, unscaled
    mean, std = fit_standardizer(raw[tr])  # training part only: validation and test never inform the scaling
    full = _dataset(train_parts, mean, std)
    test = _dataset({b: read_batch(root / batch_path(b)) for b in test_batches}, mean, std)
    if missing:  # the protocol's pooled test then covers fewer batches than "every later batch": said, not only recorded
        warnings.warn(
            f"gas_drift: batch(es) {missing} are not in {root / FOLDER}, so the test covers batches {list(test_batches)} only "
            "(meta['missing_batches']); fetch them (`overlooked data fetch gas_drift`, or download=True) for the whole protocol",
            DataWarning,
            stacklevel=2,
        )
    return Splits(
        train=full.subset(tr),
        val=full.subset(va),
        test=test,
        input_keys=("features",),
        target_key="label",
        meta={
            "num_classes": len(GASES),
            "input_shape": (NUM_FEATURES,),
            "classes": GASES,
            "train_batches": train_batches,
            "test_batches": test_batches,
            "missing_batches": missing,
            "group_key": "batch",
            "name": "gas_drift",
        },
    )

"""N-MNIST (Orchard et al. 2015): event-camera recordings of MNIST digits, as the SLAYER-PyTorch subset.

Each sample file ``samples/<id>.bs2`` is a sequence of 5-byte events (the 40-bit layout of the original
N-MNIST ``.bin`` files and of SLAYER's ``read2Dspikes``): byte 0 = x (0..33), byte 1 = y (0..33), bit 7 of
byte 2 = polarity, and the remaining 23 bits (byte 2 & 0x7F, byte 3, byte 4, big-endian) = time in
microseconds. The lists ``train1K.txt`` / ``test100.txt`` hold ``<id>\\t<class>`` after a header line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from overlooked.checks import is_count, repeated
from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.errors import DataError, InputError
from overlooked.registry import DATASETS, ENCODERS

SENSOR = (34, 34)
_FIX = "re-fetch with `overlooked data fetch nmnist_small`"


class Events(NamedTuple):
    """One recording: integer arrays of equal length."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray  # polarity 0/1
    t: np.ndarray  # microseconds


def parse_bs2(data: bytes, source: str = "<bytes>") -> Events:
    """Decode 5-byte events; a length that is not a multiple of 5 or a coordinate off the sensor is a DataError.

    >>> e = parse_bs2(bytes([3, 4, 0x80 | 0x01, 0x02, 0x03]))
    >>> int(e.x[0]), int(e.y[0]), int(e.p[0]), int(e.t[0])
    (3, 4, 1, 66051)
    """
    if len(data) % 5:
        raise DataError(f"{source}: {len(data)} bytes is not a whole number of 5-byte events (truncated at offset {len(data) - len(data) % 5}); {_FIX}")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    bad = np.nonzero((x >= SENSOR[1]) | (y >= SENSOR[0]))[0]
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{source}: event {i} (byte offset {5 * i}) is at x={int(x[i])}, y={int(y[i])}, outside the 34x34 sensor; {_FIX}")
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return Events(x, y, p, t)


def read_bs2(path: str | os.PathLike[str]) -> Events:
    """Read one ``.bs2`` file (see :func:`parse_bs2`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing N-MNIST sample {path}; {_FIX}") from None
    except OSError as exc:  # a folder in its place, no permission, ...
        raise DataError(f"cannot read the N-MNIST sample {path} ({exc.strerror or type(exc).__name__}); {_FIX}") from None
    if not data:  # every recording of a digit holds thousands of events: an empty file was cut short
        raise DataError(f"{path} is empty (0 bytes, no events); {_FIX}")
    return parse_bs2(data, str(path))


LATE_EVENTS = ("last_bin", "drop")


def to_frames(events: Events, bins: int, duration_us: int = 300_000, late_events: str = "last_bin") -> torch.Tensor:
    """Event counts in ``bins`` equal time bins over ``duration_us``: ``[T, 2, 34, 34]`` float.

    The recordings run to about 336 ms, past the 300 ms window: ``late_events="last_bin"`` (the default, which
    every committed run used) counts those events (about 0.2%, 9 per recording) in the last bin, which then
    spans to the recording's end; ``"drop"`` leaves them out, so every bin spans ``duration_us / bins``."""
    if late_events not in LATE_EVENTS:
        raise DataError(f"late_events must be one of {LATE_EVENTS}, got {late_events!r}")
    frames = np.zeros((bins, 2, *SENSOR), dtype=np.float32)
    b = events.t * bins // duration_us
    if late_events == "drop":
        keep = b < bins
        np.add.at(frames, (b[keep], events.p[keep], events.y[keep], events.x[keep]), 1.0)
    else:
        np.add.at(frames, (np.minimum(b, bins - 1), events.p, events.y, events.x), 1.0)
    return torch.from_numpy(frames)


def read_list(path: Path) -> list[tuple[int, int]]:
    """``(sample id, class)`` pairs of a ``train1K.txt`` / ``test100.txt`` list."""
    if not path.is_file():
        raise DataError(f"missing N-MNIST list {path}; {_FIX}")
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read the N-MNIST list {path} as ASCII text ({exc}); {_FIX}") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not all(q.isdigit() for q in parts) or int(parts[1]) > 9:
            raise DataError(f"{path}, line {lineno}: expected '<sample id>\\t<class 0-9>', found {line!r}; {_FIX}")
        rows.append((int(parts[0]), int(parts[1])))
    if not rows:
        raise DataError(f"the N-MNIST list {path} names no samples; {_FIX}")
    twice = repeated([i for i, _ in rows])
    if twice:  # one recording counted twice (and, after the split, possibly in train and validation)
        raise DataError(f"the N-MNIST list {path} names sample(s) {twice[:5]} more than once; {_FIX}")
    return rows


class TimeFirst:
    """Batch transform for the trainer: ``key`` ``[B, T, ...]`` -> time-first ``[T, B, ...]``, optionally as 0/1 spikes.

    Datasets keep the example index first (so batches are one gather); spiking models read time first.
    With ``binary=True`` an event count above zero becomes one spike, so the first layer sees spikes.

    >>> enc = TimeFirst(key="frames", binary=True)
    >>> out = enc({"frames": torch.tensor([[[0.0], [3.0]]])}, torch.Generator())  # [B=1, T=2, 1]
    >>> out["frames"].shape, out["frames"][:, 0, 0].tolist()
    (torch.Size([2, 1, 1]), [0.0, 1.0])
    """

    def __init__(self, key: str = "frames", binary: bool = False):
        self.key, self.binary = key, binary

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        from overlooked.spiking.encode import batch_value

        x = batch_value(batch, self.key, "time_first")
        if x.dim() < 2:
            raise InputError(f"the time_first encoder takes {self.key!r} as [B, T, ...] (examples, then time bins); got shape {list(x.shape)}")
        x = x.transpose(0, 1)  # [T, B, ...]
        if self.binary:
            x = (x > 0).to(x.dtype)
        return {**batch, self.key: x.contiguous()}


@ENCODERS.register("time_first", family="spiking")
def time_first(key: str = "frames", binary: bool = False) -> TimeFirst:
    """Event frames ``[B, T, ...]`` to the time-first ``[T, B, ...]`` that spiking models read."""
    return TimeFirst(key, binary)


@DATASETS.register("nmnist_small", downloads=("nmnist_small",))
def nmnist_small(data_dir: str | None = None, bins: int = 10, val_fraction: float = 0.1, seed: int = 0, download: bool = False, verify: bool = True, late_events: str = "last_bin") -> Splits:
    """The SLAYER N-MNIST subset (1000 train, 100 test) as event-count frames ``"frames"`` ``[N, T, 2, 34, 34]``
    over the first 300 ms of each recording, in ``bins`` equal bins.

    ``verify`` (default) checks every file against the published sha256 first (about 0.05 s); ``False`` reads
    the files as they are (an edited copy). ``late_events``: the events after 300 ms (recordings run to about
    336 ms) are counted in the last bin (``"last_bin"``, the default, as every committed run) or left out
    (``"drop"``, every bin then 300 ms / bins long); :func:`to_frames`."""
    if late_events not in LATE_EVENTS:
        raise DataError(f"late_events must be one of {LATE_EVENTS}, got {late_events!r}")
    if not is_count(bins):
        raise DataError(f"bins (time bins per recording) must be a whole number >= 1, got {bins!r}")
    bins = int(bins)
    root = store.ensure("nmnist_small", data_dir, download, files=None if verify else ["nmnist_small/train1K.txt", "nmnist_small/test100.txt"], verify_checksums=verify)
    folder = root / "nmnist_small"

    def load(rows: list[tuple[int, int]]) -> ArrayDataset:
        frames = torch.stack([to_frames(read_bs2(folder / "samples" / f"{i}.bs2"), bins, late_events=late_events) for i, _ in rows])  # [N, T, 2, 34, 34]
        return ArrayDataset({"frames": frames, "label": torch.tensor([c for _, c in rows], dtype=torch.int64)})

    train_rows, test_rows = read_list(folder / "train1K.txt"), read_list(folder / "test100.txt")
    shared = sorted({i for i, _ in train_rows} & {i for i, _ in test_rows})
    if shared:  # a recording in both would be trained on and tested on
        raise DataError(f"the N-MNIST lists train1K.txt and test100.txt in {folder} both name sample(s) {shared[:5]}; {_FIX}")
    full, test = load(train_rows), load(test_rows)
    tr, va = split_train_val(len(full), val_fraction, seed)
    return Splits(full.subset(tr), full.subset(va), test, ("frames",), "label", {"num_classes": 10, "frame_shape": (bins, 2, *SENSOR), "name": "nmnist_small", "step_duration_s": 0.3 / bins, "late_events": late_events})

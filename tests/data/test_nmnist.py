"""N-MNIST .bs2 parsing: hand-made events, bad files, and the real subset's counts."""

from __future__ import annotations

import pytest
import torch

from overlooked.data.nmnist import nmnist_small, parse_bs2, read_bs2, read_list, to_frames
from overlooked.errors import DataError


def test_parse_known_bytes():
    data = bytes([0, 0, 0x00, 0x00, 0x10, 33, 5, 0x81, 0x00, 0x00])
    e = parse_bs2(data)
    assert e.x.tolist() == [0, 33] and e.y.tolist() == [0, 5] and e.p.tolist() == [0, 1] and e.t.tolist() == [16, 65536]
    frames = to_frames(e, bins=2, duration_us=131072)
    assert frames.shape == (2, 2, 34, 34) and frames[0, 0, 0, 0] == 1 and frames[1, 1, 5, 33] == 1


def test_polarity_is_bit_7_alone_and_bit_16_of_time_sits_below_it():
    """Byte 2 holds the polarity in bit 7 and timestamp bits 22..16 below it: 0x80 is ON at t = 0, 0x01 is OFF
    at t = 1 << 16 = 65536 (a reader taking the polarity from the low bit would swap both)."""
    e = parse_bs2(bytes([1, 2, 0x80, 0, 0, 1, 2, 0x01, 0, 0]))
    assert e.p.tolist() == [1, 0] and e.t.tolist() == [0, 65536] and e.x.tolist() == [1, 1] and e.y.tolist() == [2, 2]


def test_truncated_and_off_sensor_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="not a whole number of 5-byte events.*offset 5"):
        parse_bs2(bytes(7), "x.bs2")
    with pytest.raises(DataError, match="event 1 .byte offset 5. is at x=40"):
        parse_bs2(bytes([1, 1, 0, 0, 0, 40, 1, 0, 0, 0]), "x.bs2")
    with pytest.raises(DataError, match="missing N-MNIST sample"):
        read_bs2(tmp_path / "nope.bs2")
    bad = tmp_path / "list.txt"
    bad.write_text("#sample #class\n1\t12\n")
    with pytest.raises(DataError, match="line 2"):
        read_list(bad)
    # read with verify=false these raised PyTorch's "stack expects a non-empty TensorList", a UnicodeDecodeError
    # or an IsADirectoryError naming no file, or loaded an empty file as a recording with no events
    bad.write_text("#sample #class\n")
    with pytest.raises(DataError, match=r"list\.txt names no samples; re-fetch"):
        read_list(bad)
    bad.write_bytes(b"#sample #class\n1\t\xe9\n")
    with pytest.raises(DataError, match=r"cannot read the N-MNIST list .*list\.txt as ASCII text"):
        read_list(bad)
    (tmp_path / "dir.bs2").mkdir()
    with pytest.raises(DataError, match=r"cannot read the N-MNIST sample .*dir\.bs2 \(Is a directory\)"):
        read_bs2(tmp_path / "dir.bs2")
    (tmp_path / "empty.bs2").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.bs2 is empty \(0 bytes, no events\)"):
        read_bs2(tmp_path / "empty.bs2")


@pytest.mark.data
def test_real_subset_counts_and_labels(data_dir):
    rows = read_list(data_dir / "nmnist_small" / "train1K.txt")
    assert len(rows) == 1000 and len(read_list(data_dir / "nmnist_small" / "test100.txt")) == 100
    e = read_bs2(data_dir / "nmnist_small" / "samples" / "1.bs2")
    assert 1000 < len(e.t) < 8000 and e.x.max() <= 33 and set(e.p.tolist()) == {0, 1}


@pytest.mark.data
@pytest.mark.slow
def test_registered_dataset_shapes(data_dir):
    s = nmnist_small(data_dir=str(data_dir), bins=5)
    assert (len(s.train), len(s.val), len(s.test)) == (900, 100, 100)
    assert tuple(s.test.tensors["frames"].shape) == (100, 5, 2, 34, 34)
    # MANIFEST: test class counts 0:8 1:14 2:8 3:11 4:14 5:7 6:10 7:15 8:2 9:11
    assert s.test.tensors["label"].bincount(minlength=10).tolist() == [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]
    # the seed chooses the validation recordings: seed 1 holds out others than seed 0, and the split covers train
    other = nmnist_small(data_dir=str(data_dir), bins=5, seed=1)
    assert not (other.val.tensors["label"] == s.val.tensors["label"]).all()
    assert torch.equal(torch.cat([s.train.tensors["label"], s.val.tensors["label"]]).bincount(minlength=10), torch.cat([other.train.tensors["label"], other.val.tensors["label"]]).bincount(minlength=10))


@pytest.mark.data
def test_a_changed_sample_fails_its_checksum_unless_verify_is_off(tmp_path, data_dir):
    import shutil

    shutil.copytree(data_dir / "nmnist_small", tmp_path / "nmnist_small")
    sample = tmp_path / "nmnist_small" / "samples" / "1.bs2"
    data = bytearray(sample.read_bytes())
    data[-1] ^= 0x01  # one bit of the last event
    sample.write_bytes(bytes(data))
    with pytest.raises(DataError, match="1.bs2 failed its checksum"):
        nmnist_small(data_dir=str(tmp_path))
    assert len(nmnist_small(data_dir=str(tmp_path), verify=False).test) == 100


def test_bins_must_be_a_positive_whole_number(tmp_path):
    for bins in (0, -1, 2.5):
        with pytest.raises(DataError, match="bins .* must be a whole number >= 1"):
            nmnist_small(data_dir=str(tmp_path), bins=bins)


def test_lists_naming_a_recording_twice_or_in_both_splits_are_refused(tmp_path, data_dir):
    """An adversarial review's: with verify=false, a list line repeated, or a test id added to train1K.txt, put
    one recording twice in training (or in train, validation and test alike) without a word."""
    import shutil

    shutil.copytree(data_dir / "nmnist_small", tmp_path / "nmnist_small")
    listing = tmp_path / "nmnist_small" / "train1K.txt"
    original = listing.read_text()
    first = next(line for line in original.splitlines() if line.strip() and not line.startswith("#"))
    listing.write_text(original + first + "\n")
    with pytest.raises(DataError, match=r"train1K\.txt names sample\(s\) \[\d+\] more than once"):
        nmnist_small(data_dir=str(tmp_path), verify=False)
    test_line = next(line for line in (tmp_path / "nmnist_small" / "test100.txt").read_text().splitlines() if line.strip() and not line.startswith("#"))
    listing.write_text(original + test_line + "\n")
    with pytest.raises(DataError, match=r"train1K\.txt and test100\.txt in .* both name sample\(s\)"):
        nmnist_small(data_dir=str(tmp_path), verify=False)


def test_events_after_the_window_go_to_the_last_bin_or_are_dropped():
    """Recordings run to ~336 ms, past the 300 ms window: by default (every committed run) those events are
    counted in the last bin; late_events='drop' leaves them out so every bin has one length."""
    import numpy as np

    from overlooked.data.nmnist import Events

    t = np.array([0, 29_999, 30_000, 299_999, 300_000, 336_000])
    ev = Events(x=np.zeros(6, dtype=np.int64), y=np.zeros(6, dtype=np.int64), p=np.zeros(6, dtype=np.int64), t=t)
    last = to_frames(ev, 10)[:, 0, 0, 0].tolist()
    dropped = to_frames(ev, 10, late_events="drop")[:, 0, 0, 0].tolist()
    assert last == [2.0, 1.0, 0, 0, 0, 0, 0, 0, 0, 3.0] and dropped == [2.0, 1.0, 0, 0, 0, 0, 0, 0, 0, 1.0]
    with pytest.raises(DataError, match="late_events must be one of"):
        to_frames(ev, 10, late_events="clip")


@pytest.mark.parametrize("late_events", ["last_bin", "drop"])
def test_an_event_lands_at_its_polarity_row_and_column(late_events):
    """Frames are [T, polarity, y, x]: an ON event at x = 3, y = 5, 40 ms goes to bin 1 of 10, [1, 1, 5, 3]."""
    import numpy as np

    from overlooked.data.nmnist import Events

    ev = Events(x=np.array([3]), y=np.array([5]), p=np.array([1]), t=np.array([40_000]))
    frames = to_frames(ev, 10, late_events=late_events)
    assert frames.sum() == 1 and frames[1, 1, 5, 3] == 1

"""Pins from the mutation audit of data/store.py (results/audits/mutants_memory_ckpt_store.yaml). No network:
every download reads a local folder mirror (a file:// URL)."""

from __future__ import annotations

import shutil
import warnings

import pytest

from overlooked.data import store
from overlooked.errors import DataWarning

MNIST_LABELS = "mnist/train-labels-idx1-ubyte.gz"


@pytest.mark.data
def test_every_replaced_copy_is_kept_under_its_own_number(tmp_path, data_dir):
    """Three hand-edited copies replaced one after the other end as NAME.replaced, NAME.replaced.1 and
    NAME.replaced.2: a later replacement never overwrites an earlier kept copy."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(data_dir / MNIST_LABELS, mirror / "train-labels-idx1-ubyte.gz")
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    edits = [b"first edit\n", b"second edit\n", b"third edit\n"]
    for edit in edits:
        (root / MNIST_LABELS).write_bytes(edit)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            store.fetch("mnist", root, mirrors=[str(mirror)], files=[MNIST_LABELS])
        assert [w.category for w in caught] == [DataWarning]
    kept = {p.name: p.read_bytes() for p in (root / "mnist").glob("train-labels-idx1-ubyte.gz.replaced*")}
    assert kept == {
        "train-labels-idx1-ubyte.gz.replaced": edits[0],
        "train-labels-idx1-ubyte.gz.replaced.1": edits[1],
        "train-labels-idx1-ubyte.gz.replaced.2": edits[2],
    }
    assert (root / MNIST_LABELS).read_bytes() == (data_dir / MNIST_LABELS).read_bytes()
